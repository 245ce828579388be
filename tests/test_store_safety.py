"""Nothing recorded is lost or silently corrupted: chunk integrity, one writer, atomic creation,
and a writer killed at random moments, many times.

Rows are deterministic functions of the step (``row``), so what a killed process appended can be
recomputed and compared bit for bit with what is on disk.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgn_memory.errors import InvalidStoreError, SgnMemoryError
from sgn_memory.store import CoordinateMap, NoiseStore
from sgn_memory.store._lock import LOCK_NAME, holder

REPO = Path(__file__).resolve().parent.parent
SEED = 20261201


def coords(k: int, layer: str = "fc") -> CoordinateMap:
    return CoordinateMap(np.array([f"{layer}.weight"] * k), np.arange(k), np.array([layer] * k))


def row(step: int, k: int) -> np.ndarray:
    return np.random.default_rng([SEED, step]).standard_normal(k).astype(np.float32)


def rows(steps, k: int) -> np.ndarray:
    return np.stack([row(int(t), k) for t in steps])


def make_store(path: Path, *, n=40, k=12, chunk_rows=8, **kw) -> Path:
    """A closed store: 40 rows x 12 coordinates, noise chunks of (8, 12), steps 0..n-1."""
    with NoiseStore.create(path, coordinates=coords(k), chunk_rows=chunk_rows, **kw) as store:
        for t in range(n):
            store.append(row(t, k), step=t, scalars={"loss": float(t)})
    return path


def wide_store(path: Path) -> Path:
    """Noise chunks of (128, 8192) over k = 10_000 columns: two chunk columns."""
    k = 10_000
    with NoiseStore.create(path, coordinates=coords(k), chunk_rows=128) as store:
        store.append(rows(range(256), k), step=np.arange(256))
    return path


def chunk_file(store_path: Path, array: str, *index) -> Path:
    return store_path.joinpath(array, "c", *map(str, index))


# ------------------------------------------------------------------------------ integrity


def test_a_deleted_noise_chunk_is_an_error_naming_it_never_nan(tmp_path):
    path = wide_store(tmp_path / "run")
    assert NoiseStore.open(path).chunk_shape == (128, 5000)
    chunk_file(path, "noise", 1, 0).unlink()
    with pytest.raises(InvalidStoreError) as info:
        NoiseStore.open(path)
    msg = str(info.value)
    assert "noise chunk (1, 0)" in msg and "rows 128-255" in msg and "missing" in msg
    assert "noise/c/1/0" in msg and "salvage" in msg


@pytest.mark.parametrize(
    ("array", "index", "what"),
    [
        ("steps", (0,), "steps chunk (0,)"),
        ("scalars/loss", (0,), "scalars/loss chunk (0,)"),
        ("coordinates/param_name", (0,), "coordinates/param_name chunk (0,)"),
        ("coordinates/flat_index", (0,), "coordinates/flat_index chunk (0,)"),
    ],
)
def test_every_array_s_missing_chunk_is_named(tmp_path, array, index, what):
    path = make_store(tmp_path / "run")
    chunk_file(path, array, *index).unlink()
    with pytest.raises(InvalidStoreError, match=r"missing") as info:
        NoiseStore.open(path)
    assert what in str(info.value)


def test_a_right_sized_chunk_of_random_bytes_fails_its_checksum(tmp_path):
    path = make_store(tmp_path / "run")
    f = chunk_file(path, "noise", 2, 0)
    size = f.stat().st_size
    assert size == 8 * 12 * 4 + 4  # uncompressed rows, then the 4-byte crc32c
    f.write_bytes(np.random.default_rng(0).bytes(size))
    store = NoiseStore.open(path)  # presence is checked at open, content on read
    np.testing.assert_array_equal(store.read_noise(rows=slice(0, 16)), rows(range(16), 12))
    with pytest.raises(InvalidStoreError, match=r"noise chunk \(2, 0\).*checksum"):
        store.read_noise()
    with pytest.raises(InvalidStoreError, match=r"noise chunk \(2, 0\)"):
        list(store.iter_coord_blocks())
    [bad] = store.verify()
    assert (bad.array, bad.index, bad.rows) == ("noise", (2, 0), (16, 23))


def test_a_flipped_bit_in_steps_or_coordinates_is_caught(tmp_path):
    path = make_store(tmp_path / "run")
    for array in ("steps", "coordinates/layer"):
        f = chunk_file(path, array, 0)
        data = bytearray(f.read_bytes())
        data[1] ^= 0x04
        f.write_bytes(bytes(data))
    store = NoiseStore.open(path)
    with pytest.raises(InvalidStoreError, match=r"steps chunk \(0,\).*checksum"):
        store.steps  # noqa: B018
    with pytest.raises(InvalidStoreError, match=r"coordinates/layer chunk \(0,\)"):
        store.coordinates  # noqa: B018
    assert [b.array for b in store.verify()] == ["steps", "coordinates/layer"]


def test_salvage_reads_what_is_readable_and_lists_the_rest(tmp_path):
    path = wide_store(tmp_path / "run")
    chunk_file(path, "noise", 1, 0).unlink()
    damaged = chunk_file(path, "noise", 0, 1)
    damaged.write_bytes(b"\0" * damaged.stat().st_size)
    store = NoiseStore.open(path, salvage=True)
    assert sorted((b.index, b.problem.split()[0]) for b in store.damage) == [
        ((0, 1), "damaged"),
        ((1, 0), "missing"),
    ]
    x = store.read_noise()
    full = rows(range(256), 10_000)
    width = store.chunk_shape[1]
    assert np.isnan(x[128:, :width]).all() and np.isnan(x[:128, width:]).all()
    np.testing.assert_array_equal(x[:128, :width], full[:128, :width])
    np.testing.assert_array_equal(x[128:, width:], full[128:, width:])
    # a selection across the damage, as analyze reads it
    cols = np.array([3, width - 1, width, 9_999])
    np.testing.assert_array_equal(store.read_noise(coords=cols), x[:, cols])
    np.testing.assert_array_equal(store.read_noise(rows=5, coords=9_999), x[5, 9_999])
    blocks = np.concatenate([b for _, b in store.iter_coord_blocks()], axis=1)
    np.testing.assert_array_equal(blocks, x)


def test_salvaged_steps_and_coordinates_are_marked_not_invented(tmp_path):
    path = make_store(tmp_path / "run")
    chunk_file(path, "steps", 0).unlink()
    chunk_file(path, "coordinates/layer", 0).unlink()
    store = NoiseStore.open(path, salvage=True)
    assert (store.steps == -1).all()
    assert set(store.coordinates.layer) == {"(unreadable)"}
    np.testing.assert_array_equal(store.read_noise(), rows(range(40), 12))


def test_chunks_equal_to_the_fill_value_are_written(tmp_path):
    # a scalar never given (NaN, its fill value), top-level parameters (layer ""), index 0:
    # every chunk still exists, so the presence check never mistakes them for damage
    path = tmp_path / "run"
    c = CoordinateMap(np.array(["w"]), np.array([0]), np.array([""]))
    with NoiseStore.create(path, coordinates=c, chunk_rows=8) as store:
        store.append(np.full((20, 1), np.float32(0.5)), step=np.arange(20))
    store = NoiseStore.open(path)
    assert store.verify() == []
    assert np.isnan(store.scalar("amp_scale")).all() and store.coordinates.layer[0] == ""


def test_schema_1_stores_are_still_read_and_their_noise_chunks_checked(tmp_path):
    path = make_store(tmp_path / "run")
    # rewrite it as schema 1 wrote it: no checksums (the noise array recreated bare)
    group = zarr.open_group(path, mode="r+")
    values = group["noise"][:]
    del group["noise"]
    a = group.create_array(
        "noise", shape=values.shape, chunks=(8, 12), dtype="float32", fill_value=np.nan,
        compressors=None, config={"write_empty_chunks": True},
    )  # fmt: skip
    a[:] = values
    group.update_attributes({"schema_version": 1})
    store = NoiseStore.open(path)
    assert not store.checksums
    np.testing.assert_array_equal(store.read_noise(), rows(range(40), 12))
    chunk_file(path, "noise", 3, 0).unlink()
    with pytest.raises(InvalidStoreError, match=r"noise chunk \(3, 0\).*missing"):
        NoiseStore.open(path)


def test_a_store_replaced_while_it_is_read_is_an_error(tmp_path):
    path = make_store(tmp_path / "run")
    reader = NoiseStore.open(path)
    make_store(path, n=40, overwrite=True)
    with pytest.raises(InvalidStoreError, match="removed or replaced while it was being read"):
        reader.read_noise()


# ------------------------------------------------------------------------------ append


@pytest.mark.parametrize(
    ("noise", "step", "message"),
    [
        (np.full(12, np.nan), 40, "NaN or infinite"),
        (np.r_[np.ones(11), np.inf], 40, "NaN or infinite"),
        (np.ones(12), -1, "negative"),
        (np.ones(12), 39, "strictly increase"),
    ],
)
def test_append_refuses_nan_rows_negative_and_repeated_steps(tmp_path, noise, step, message):
    path = tmp_path / "run"
    with NoiseStore.create(path, coordinates=coords(12), chunk_rows=8) as store:
        for t in range(40):
            store.append(row(t, 12), step=t)
        with pytest.raises(SgnMemoryError, match=message):
            store.append(noise, step=step)
        with pytest.raises(SgnMemoryError, match=message):
            store.append(noise[None], step=[step])
        store.append(row(40, 12), step=40)  # the refusal changed nothing
    store = NoiseStore.open(path)
    np.testing.assert_array_equal(store.steps, np.arange(41))
    np.testing.assert_array_equal(store.read_noise(), rows(range(41), 12))


# ------------------------------------------------------------------------------ one writer

_HOLD = """
import sys, time
import numpy as np
from sgn_memory.store import CoordinateMap, NoiseStore
k = 12
c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
store = NoiseStore.create(sys.argv[1], coordinates=c, chunk_rows=8, overwrite=True)
for t in range(20):
    store.append(np.random.default_rng([20261201, t]).standard_normal(k), step=t)
store.flush()
print("ready", flush=True)
time.sleep(60)
"""


def _start_holder(path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    path = tmp_path / "run"
    proc = _start_holder(path)
    try:
        info = holder(path)
        assert info["pid"] == proc.pid
        for attempt in (
            lambda: NoiseStore.create(path, coordinates=coords(12), overwrite=True),
            lambda: NoiseStore.resume(path, after_step=5),
        ):
            with pytest.raises(SgnMemoryError, match=f"being written by process {proc.pid} on"):
                attempt()
        reader = NoiseStore.open(path)  # readers are never refused
        np.testing.assert_array_equal(reader.read_noise(), rows(range(20), 12))
    finally:
        proc.kill()
        proc.communicate()
    # the holder died (SIGKILL): its lock is stale, taken over with a warning by a resume
    with pytest.warns(RuntimeWarning, match=rf"taking over the writer lock .*process {proc.pid}"):
        store = NoiseStore.resume(path, after_step=19)
    store.append(row(20, 12), step=20)
    store.close()
    assert holder(path) is None
    np.testing.assert_array_equal(NoiseStore.open(path).read_noise(), rows(range(21), 12))


def test_two_writers_in_one_process_are_refused(tmp_path):
    path = tmp_path / "run"
    first = NoiseStore.create(path, coordinates=coords(12))
    with pytest.raises(SgnMemoryError, match="open for writing in this process"):
        NoiseStore.create(path, coordinates=coords(12), overwrite=True)
    first.close()
    NoiseStore.create(path, coordinates=coords(12), overwrite=True).close()
    assert (path / LOCK_NAME).read_text() == ""  # a clean close leaves no holder


# ------------------------------------------------------------------------------ creation


def test_creation_is_atomic_and_leaves_nothing_beside(tmp_path):
    path = make_store(tmp_path / "run")
    before = sorted(p.name for p in tmp_path.iterdir())
    make_store(path, n=30, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    np.testing.assert_array_equal(NoiseStore.open(path).steps, np.arange(30))


def test_an_old_half_created_folder_is_recognised_and_replaced(tmp_path):
    # what an interrupted in-place create() of an earlier release left: arrays, no attributes
    path = tmp_path / "run"
    group = zarr.open_group(path, mode="w", zarr_format=3)
    group.create_array("noise", shape=(0, 3), chunks=(8, 3), dtype="float32")
    group.create_group("scalars")
    with pytest.raises(SgnMemoryError, match="already exists"):
        NoiseStore.create(path, coordinates=coords(12))
    make_store(path, overwrite=True)
    assert NoiseStore.open(path).n_complete == 40
    # a foreign folder that merely holds a zarr.json is not ours
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group"}))
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SgnMemoryError, match="not a NoiseStore"):
        NoiseStore.create(foreign, coordinates=coords(12), overwrite=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_an_empty_folder_is_filled_in_place(tmp_path):
    path = tmp_path / "made-by-the-scheduler"
    path.mkdir()
    ino = path.stat().st_ino
    make_store(path)
    assert path.stat().st_ino == ino and NoiseStore.open(path).n_complete == 40


_CREATE_LOOP = """
import sys
import numpy as np
from sgn_memory.store import CoordinateMap, NoiseStore
k = 2000
c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
print("ready", flush=True)
while True:
    NoiseStore.create(sys.argv[1], coordinates=c, overwrite=True).close()
"""


def test_sigkill_during_create_overwrite_never_blocks_a_restart(tmp_path):
    path = make_store(tmp_path / "run")
    rng = np.random.default_rng(1)
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CREATE_LOOP, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        # the path holds a whole store (the old one or a new empty one), or nothing while an
        # interrupted swap left the old one beside it; either way a restart goes through
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "removed ... left by ..."
            make_store(path, overwrite=True)
        assert NoiseStore.open(path).verify() == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ------------------------------------------------------------------------------ fault injection

_KILLED_WRITER = """
import sys
import numpy as np
from sgn_memory.store import CoordinateMap, NoiseStore
path, k, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
c = CoordinateMap(np.array(["fc.weight"] * k), np.arange(k), np.array(["fc"] * k))
if start < 0:
    store = NoiseStore.create(path, coordinates=c, chunk_rows=16, flush_interval=None)
    start = 0
else:
    store = NoiseStore.resume(path, after_step=start - 1, flush_interval=None)
print("ready", flush=True)
t = start
while True:
    x = np.random.default_rng([20261201, t]).standard_normal(k).astype(np.float32)
    store.append(x, step=t, scalars={"loss": float(t)})
    if t % 23 == 22:
        store.flush()  # partial chunks: the next block rewrites a half-filled chunk
    t += 1
"""


@pytest.mark.slow
def test_a_writer_killed_at_random_moments_never_corrupts_a_row(tmp_path):
    """Kill, resume, kill ... 30 times; after each kill every row below n_complete equals the
    row the writer computed for its step, every chunk verifies, and a resume continues it."""
    path, k = tmp_path / "run", 300
    rng = np.random.default_rng(7)
    start, survived, kills = -1, 0, 30
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, str(path), str(k), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
        )
        ready = proc.stdout.readline()
        assert ready.strip() == b"ready", proc.stderr.read().decode()
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if not path.exists():  # killed before its creation was renamed into place
            start = -1
            survived += 1
            continue
        store = NoiseStore.open(path)
        n = store.n_complete
        assert store.verify() == []
        np.testing.assert_array_equal(store.steps, np.arange(n))
        if n:
            np.testing.assert_array_equal(store.read_noise(), rows(range(n), k))
        np.testing.assert_array_equal(store.scalar("loss"), np.arange(n))
        survived += 1
        start = n  # the next writer resumes after the last complete row
    assert survived == kills and start > 0


# ------------------------------------------------------------------------------ full disk


def _train_until_the_disk_is_full(path: Path, monkeypatch, *, full_after: str | None):
    import torch

    from sgn_memory import NoiseCollector

    if full_after is not None:  # the disk fills up when this chunk is written
        set_ = zarr.storage.LocalStore.set

        async def set_or_enospc(self, key, value):
            if key.startswith(full_after):
                raise OSError(28, "No space left on device")
            return await set_(self, key, value)

        monkeypatch.setattr(zarr.storage.LocalStore, "set", set_or_enospc)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(200, 200), torch.nn.Linear(200, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 200), torch.randint(0, 10, (64,))
    col = NoiseCollector(model, opt, path, coordinates=2000, reference="none")
    with pytest.warns(RuntimeWarning, match="recording stopped") as record:
        for _ in range(1200):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        col.close()
    if monkeypatch is not None:
        monkeypatch.undo()
    [message] = [str(w.message) for w in record if "recording stopped" in str(w.message)]
    return col, message


def test_a_full_disk_warning_says_what_is_on_disk(tmp_path, monkeypatch):
    path = tmp_path / "run"
    col, message = _train_until_the_disk_is_full(path, monkeypatch, full_after="noise/c/1/")
    on_disk = NoiseStore.open(path).n_complete
    assert on_disk == 524  # the first chunk of rows (k = 2000: 524 rows per chunk)
    assert f"the {on_disk} rows on disk are kept" in message
    assert f"the {col.rows_written - on_disk} rows after them are lost" in message
    assert "No space left on device" in message


def test_a_real_full_disk(tmp_path):
    """The same on a 6 MiB tmpfs, where the machine lets us mount one (root in a container)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        _, message = _train_until_the_disk_is_full(mnt / "run", None, full_after=None)
        on_disk = NoiseStore.open(mnt / "run").n_complete
        assert on_disk == 524 and f"the {on_disk} rows on disk are kept" in message
        np.testing.assert_array_equal(NoiseStore.open(mnt / "run").steps, np.arange(1, 525))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ------------------------------------------------------------------------------ found by trial


def test_a_reader_opened_before_a_resume_is_told_not_given_two_runs(tmp_path):
    path = make_store(tmp_path / "run")
    reader = NoiseStore.open(path)
    before = reader.read_noise()
    with NoiseStore.resume(path, after_step=10) as writer:  # what a restarted job does
        writer.append(np.full((20, 12), 7.0), step=np.arange(11, 31))
    with pytest.raises(InvalidStoreError, match="resumed writing this store while it was being"):
        reader.read_noise()
    fresh = NoiseStore.open(path)
    np.testing.assert_array_equal(fresh.read_noise()[:11], before[:11])
    assert fresh.n_complete == 31


def test_create_through_a_symlink_writes_where_it_points_and_leaves_nothing(tmp_path):
    scratch, runs = tmp_path / "scratch", tmp_path / "runs"
    scratch.mkdir()
    runs.mkdir()
    make_store(scratch / "exp1")
    (runs / "exp1").symlink_to(scratch / "exp1")
    make_store(runs / "exp1", n=30, overwrite=True)
    assert (runs / "exp1").is_symlink()
    assert sorted(p.name for p in runs.iterdir()) == ["exp1"]
    assert sorted(p.name for p in scratch.iterdir()) == ["exp1"]
    np.testing.assert_array_equal(NoiseStore.open(runs / "exp1").steps, np.arange(30))


def test_append_refuses_what_float32_or_int64_cannot_hold(tmp_path):
    with NoiseStore.create(tmp_path / "run", coordinates=coords(3), chunk_rows=8) as store:
        with pytest.raises(SgnMemoryError, match="NaN or infinite"):
            store.append(np.array([1e39, 0.0, 0.0]), step=1)  # inf once stored as float32
        with pytest.raises(SgnMemoryError, match="non-negative int64"):
            store.append(np.zeros(3), step=np.uint64(2**63 + 5))
        with pytest.raises(SgnMemoryError, match=r"this call's steps \[5, 4\] do not"):
            store.append(np.zeros((2, 3)), step=[5, 4])
        # the collector's path: a huge but finite row whose float32 norm overflowed is kept
        store._append_row_into(lambda row: row.fill(4e20), 1, {"noise_norm_sq": float("inf")})
        with pytest.raises(SgnMemoryError, match="NaN or infinite"):
            store._append_row_into(lambda row: row.fill(np.nan), 2, {"noise_norm_sq": np.nan})
    assert NoiseStore.open(tmp_path / "run").read_noise()[0, 0] == np.float32(4e20)


def test_an_n_complete_edited_past_the_written_rows_is_damage(tmp_path):
    path = tmp_path / "run"
    store = NoiseStore.create(path, coordinates=coords(12), chunk_rows=8)
    store.append(rows(range(20), 12), step=np.arange(20))
    store.flush()  # arrays grown ahead; the process dies before close() trims them
    store._writer.lock.release()
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["n_complete"] = 23
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidStoreError, match="row 20 has step -1 after step 19"):
        NoiseStore.open(path).steps  # noqa: B018


def test_a_missing_group_metadata_file_does_not_hide_the_coordinates(tmp_path):
    path = make_store(tmp_path / "run")
    (path / "coordinates" / "zarr.json").unlink()
    assert NoiseStore.open(path).coordinates.layer[0] == "fc"


_FORKING_WRITER = """
import os, sys, time
import numpy as np
from sgn_memory.store import CoordinateMap, NoiseStore
c = CoordinateMap(np.array(["w"] * 3), np.arange(3), np.array(["fc"] * 3))
store = NoiseStore.create(sys.argv[1], coordinates=c, chunk_rows=8)
store.append(np.ones((8, 3)), step=np.arange(8))
store.flush()
if os.fork() == 0:  # a DataLoader worker, say, that outlives its parent
    time.sleep(30)
    os._exit(0)
print("ready", flush=True)
time.sleep(30)
"""


def test_a_forked_child_does_not_keep_a_dead_writer_s_lock(tmp_path):
    path = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", _FORKING_WRITER, str(path)], stdout=subprocess.PIPE, cwd=REPO
    )
    try:
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        with pytest.warns(RuntimeWarning, match="taking over the writer lock"):
            NoiseStore.resume(path, after_step=7).close()
    finally:
        proc.kill()
        subprocess.run(["pkill", "-f", "a DataLoader worker, say"], check=False)


def test_a_sibling_of_a_running_create_is_not_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".run.sgn-new-{sleeper.pid}-abcdef"
        dead = tmp_path / ".run.sgn-new-999999999-abcdef"
        for folder in (live, dead):
            folder.mkdir()
            (folder / LOCK_NAME).write_text("")  # created, lock not taken yet
        with pytest.warns(RuntimeWarning, match="removed .*999999999"):
            make_store(tmp_path / "run")
        assert live.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.communicate()
