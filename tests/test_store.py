"""Tests of sgn_memory.store: the on-disk NoiseStore (zarr v3).

Rows written in the tests are deterministic functions of the step index, so a test can recompute
what a (killed) writer process appended and compare it bit for bit with what is on disk.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from sgn_memory.errors import InvalidStoreError, SchemaVersionError, SgnMemoryError
from sgn_memory.store import (
    CHUNK_BYTES,
    DEFAULT_SCALARS,
    SCHEMA_VERSION,
    CoordinateMap,
    NoiseStore,
    default_chunk_rows,
    noise_chunk_shape,
)

REPO = Path(__file__).resolve().parent.parent
SEED = 20241104


def make_coords(k: int) -> CoordinateMap:
    layer = np.array([f"block{i % 3}.conv" for i in range(k)])
    names = np.char.add(layer, np.where(np.arange(k) % 2 == 0, ".weight", ".bias"))
    return CoordinateMap(param_name=names, flat_index=np.arange(k) // 6, layer=layer)


def row(step: int, k: int) -> np.ndarray:
    """The deterministic float64 noise row of a step (the crash test's subprocess uses this too)."""
    return np.random.default_rng([SEED, step]).standard_normal(k)


def rows(steps, k: int) -> np.ndarray:
    return np.stack([row(t, k) for t in steps]) if len(steps) else np.zeros((0, k))


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.fixture
def small_store(tmp_path):
    """A closed store of 20 rows, k = 12, 8 rows per chunk."""
    path = tmp_path / "run"
    with NoiseStore.create(path, coordinates=make_coords(12), chunk_rows=8) as store:
        for t in range(20):
            store.append(row(t, 12), step=t, scalars={"loss": float(t)})
    return path


# ------------------------------------------------------------------------------ round trip


def test_round_trip_is_exact(tmp_path):
    k = 37
    coords = make_coords(k)
    attrs = {
        "reference": "batch",
        "reference_size": 4096,
        "optimizer": {"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": False},
        "batch_size": 32,
        "seeds": (1, 2, np.int64(3)),
        "model": "ResNet-20, 0.27 M parameters",
        "note": None,
        "full_loss": float("nan"),  # a diverged run's loss is kept, not refused
    }
    steps = list(range(0, 3 * 61, 3))
    path = tmp_path / "run"
    with NoiseStore.create(path, coordinates=coords, attrs=attrs, chunk_rows=8) as store:
        assert store.n_coords == k and store.scalar_names == DEFAULT_SCALARS
        i = 0
        for r in (1, 1, 5, 13, 1, 8, 20, 12):  # single rows and blocks that straddle chunks
            chunk = steps[i : i + r]
            if r == 1:
                store.append(row(chunk[0], k), step=chunk[0], scalars={"loss": 0.5 * chunk[0]})
            else:
                store.append(
                    rows(chunk, k),
                    step=np.array(chunk),
                    scalars={"loss": 0.5 * np.array(chunk), "lr": 0.1, "skipped": 0.0},
                )
            i += r
        assert store.n_appended == len(steps)

    store = NoiseStore.open(path)
    n = len(steps)
    assert store.read_only and store.n_complete == n
    expected = rows(steps, k).astype(np.float32)
    got = store.read_noise()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(store.steps, steps)
    assert store.steps.dtype == np.int64
    np.testing.assert_array_equal(store.scalar("loss"), 0.5 * np.array(steps))
    lr = store.scalar("lr")
    assert lr.dtype == np.float64 and np.isnan(lr[:2]).all() and (lr[2:7] == 0.1).all()
    assert np.isnan(store.scalar("grad_norm_sq")).all()
    for field in ("param_name", "flat_index", "layer"):
        np.testing.assert_array_equal(getattr(store.coordinates, field), getattr(coords, field))
    assert store.coordinates.param_name.dtype.kind == "U"

    meta = store.attrs
    assert np.isnan(meta.pop("full_loss")) and np.isnan(attrs.pop("full_loss"))
    assert {key: meta[key] for key in attrs} == {**attrs, "seeds": [1, 2, 3]}
    assert meta["format"] == "sgn_memory.NoiseStore"
    assert meta["schema_version"] == SCHEMA_VERSION
    assert meta["protocol"] == store.protocol == "trajectory"
    assert meta["n_complete"] == n
    assert meta["scalars"] == list(DEFAULT_SCALARS)
    assert set(meta["software"]) >= {"sgn_memory", "numpy", "zarr", "python"}
    assert ("torch" in meta["software"]) == ("torch" in sys.modules)
    created = dt.datetime.fromisoformat(meta["created"])
    assert abs(created - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    # closing trims the arrays that grew ahead of the data back to n_complete
    assert store._noise.shape == (n, k) and store._steps.shape == (n,)


def test_the_collectors_direct_row_path_equals_append(tmp_path):
    """``_append_row_into`` (the collector fills the buffered row in place) writes exactly what
    ``append`` writes, across block hand-offs, and leaves unnamed scalars NaN."""
    k, n = 29, 45
    paths = tmp_path / "append", tmp_path / "direct"
    with NoiseStore.create(paths[0], coordinates=make_coords(k), chunk_rows=8) as store:
        for t in range(n):
            store.append(row(t, k), step=3 * t, scalars={"loss": float(t), "lr": 0.5})
    with NoiseStore.create(paths[1], coordinates=make_coords(k), chunk_rows=8) as store:
        for t in range(n):

            def fill(out, t=t):
                out[:] = row(t, k)

            store._append_row_into(fill, 3 * t, {"loss": float(t), "lr": 0.5})
    a, b = (NoiseStore.open(p) for p in paths)
    assert a.n_complete == b.n_complete == n
    np.testing.assert_array_equal(a.read_noise(), b.read_noise())
    np.testing.assert_array_equal(a.steps, b.steps)
    for name in DEFAULT_SCALARS:
        np.testing.assert_array_equal(a.scalar(name), b.scalar(name))
    assert np.isnan(b.scalar("grad_norm_sq")).all()


def test_on_disk_format(small_store):
    group = zarr.open_group(small_store, mode="r")
    assert group.metadata.zarr_format == 3
    noise = json.loads((small_store / "noise" / "zarr.json").read_text())
    assert noise["data_type"] == "float32" and noise["shape"] == [20, 12]
    assert noise["chunk_grid"]["configuration"]["chunk_shape"] == [8, 12]
    # no sharding, no compression; a crc32c checksum per chunk, in every array
    assert [c["name"] for c in noise["codecs"]] == ["bytes", "crc32c"]
    assert noise["fill_value"] == "NaN"
    for array in ("steps", "scalars/loss", "coordinates/flat_index", "coordinates/layer"):
        meta = json.loads((small_store / array / "zarr.json").read_text())
        assert meta["codecs"][-1]["name"] == "crc32c", array
    for field in ("param_name", "layer"):  # strings as zarr strings, never pickled objects
        meta = json.loads((small_store / "coordinates" / field / "zarr.json").read_text())
        assert meta["data_type"] == "string"
    for name in DEFAULT_SCALARS:
        assert group[f"scalars/{name}"].dtype == np.float64
    assert group["steps"].dtype == np.int64


def test_chunks_are_about_4_mib_and_narrow_in_coordinates():
    for k in (10, 1000, 10**4, 10**5, 10**6):
        rows_, width = noise_chunk_shape(k, default_chunk_rows(k))
        assert width <= k and 128 <= rows_ <= 1024
        assert rows_ * width * 4 <= CHUNK_BYTES
        if k >= 10**4:
            assert rows_ * width * 4 >= CHUNK_BYTES / 2  # ~4 MiB, not a sliver
            assert width <= 8192  # a coordinate block over time is a narrow column of chunks
    assert noise_chunk_shape(10**5, 128) == (128, 7693)


def test_partial_final_block_is_written_on_close(tmp_path):
    path = tmp_path / "run"
    store = NoiseStore.create(path, coordinates=make_coords(5), chunk_rows=16)
    for t in range(21):
        store.append(row(t, 5), step=t)
    store.close()
    store.close()  # idempotent
    assert store.n_complete == 21
    reader = NoiseStore.open(path)
    np.testing.assert_array_equal(reader.read_noise(), rows(range(21), 5).astype(np.float32))


def test_rows_are_kept_when_the_with_block_raises(tmp_path):
    path = tmp_path / "run"
    with pytest.raises(KeyError, match="boom"):
        with NoiseStore.create(path, coordinates=make_coords(4), chunk_rows=64) as store:
            for t in range(3):
                store.append(row(t, 4), step=t)
            raise KeyError("boom")
    assert NoiseStore.open(path).n_complete == 3


def test_rows_are_written_at_exit_when_the_writer_is_not_closed(tmp_path):
    path = tmp_path / "run"
    script = f"""
        import numpy as np
        from sgn_memory.store import CoordinateMap, NoiseStore
        coords = CoordinateMap(np.array(["w"] * 3), np.arange(3), np.array([""] * 3))
        store = NoiseStore.create({str(path)!r}, coordinates=coords, chunk_rows=8)
        for t in range(13):
            store.append(np.full(3, t), step=t)
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, cwd=REPO)
    store = NoiseStore.open(path)
    assert store.n_complete == 13
    np.testing.assert_array_equal(store.read_noise()[:, 0], np.arange(13))


# ------------------------------------------------------------------------------ writing


def test_flush_writes_everything_and_blocks_realign_to_chunks(tmp_path):
    path = tmp_path / "run"
    k = 6
    store = NoiseStore.create(path, coordinates=make_coords(k), chunk_rows=8, flush_interval=None)
    for t in range(5):
        store.append(row(t, k), step=t)
    time.sleep(0.05)
    assert store.n_complete == 0 and store.n_appended == 5  # buffered only: nothing handed off
    assert NoiseStore.open(path).n_complete == 0
    store.flush()
    assert store.n_complete == 5 and NoiseStore.open(path).n_complete == 5
    # the next block ends on the chunk boundary (row 8): three rows hand it off, no flush needed
    for t in range(5, 8):
        store.append(row(t, k), step=t)
    wait_for(lambda: store.n_complete == 8)
    store.append(rows(range(8, 30), k), step=np.arange(8, 30))
    wait_for(lambda: store.n_complete == 24)
    store.flush()
    assert store.n_complete == 30
    store.close()
    np.testing.assert_array_equal(
        NoiseStore.open(path).read_noise(), rows(range(30), k).astype(np.float32)
    )


def test_flush_interval_hands_off_partial_blocks(tmp_path):
    store = NoiseStore.create(
        tmp_path / "run", coordinates=make_coords(3), chunk_rows=1000, flush_interval=0.05
    )
    store.append(row(0, 3), step=0)
    time.sleep(0.1)
    store.append(row(1, 3), step=1)  # more than flush_interval since the last hand-off
    wait_for(lambda: store.n_complete == 2)
    store.close()


def test_readers_see_only_complete_rows(tmp_path):
    path = tmp_path / "run"
    k = 10
    writer = NoiseStore.create(path, coordinates=make_coords(k), chunk_rows=8, flush_interval=None)
    for t in range(20):
        writer.append(row(t, k), step=t, scalars={"loss": t})
    wait_for(lambda: writer.n_complete == 16)  # two full blocks written, four rows buffered
    reader = NoiseStore.open(path)
    assert reader.n_complete == 16
    assert reader._noise.shape[0] > 16  # the arrays grow ahead; readers ignore rows past 16
    np.testing.assert_array_equal(reader.read_noise(), rows(range(16), k).astype(np.float32))
    np.testing.assert_array_equal(reader.steps, np.arange(16))
    assert reader.scalar("loss").shape == (16,)
    assert [b.shape for _, b in reader.iter_coord_blocks(4)] == [(16, 4), (16, 4), (16, 2)]
    # the writer reads what it has completed, too
    np.testing.assert_array_equal(writer.read_noise(rows=[-1]), row(15, k)[None].astype("f4"))
    writer.close()
    assert reader.n_complete == 16  # a snapshot until refreshed
    assert reader.refresh() == 20
    np.testing.assert_array_equal(reader.read_noise(), rows(range(20), k).astype(np.float32))


def test_append_waits_when_the_writer_falls_behind(tmp_path):
    store = NoiseStore.create(
        tmp_path / "run", coordinates=make_coords(3), chunk_rows=2, max_pending_blocks=1
    )
    writer = store._writer
    release = threading.Event()
    write = writer._write

    def slow_write(block):
        release.wait(10)
        write(block)

    writer._write = slow_write
    store.append(rows(range(2), 3), step=np.arange(2))  # taken by the thread, which waits
    wait_for(lambda: writer.queue.qsize() == 0)
    store.append(rows(range(2, 4), 3), step=np.arange(2, 4))  # fills the queue (1 block)
    done = threading.Event()

    def third():
        store.append(rows(range(4, 6), 3), step=np.arange(4, 6))
        done.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not done.wait(0.2)  # bounded memory: the caller waits instead of queueing more
    release.set()
    thread.join(10)
    assert done.is_set()
    store.close()
    assert store.n_complete == 6


def test_update_attrs(tmp_path):
    path = tmp_path / "run"
    with NoiseStore.create(path, coordinates=make_coords(3), attrs={"batch_size": 8}) as store:
        store.update_attrs(reference="exact", reference_size=60000, optimizer={"name": "Adam"})
        with pytest.raises(SgnMemoryError, match="set by the NoiseStore itself"):
            store.update_attrs(n_complete=5)
        with pytest.raises(SgnMemoryError, match="cannot be stored as JSON"):
            store.update_attrs(model=object())
        store.append(row(0, 3), step=0)
    meta = NoiseStore.open(path).attrs
    assert meta["reference"] == "exact" and meta["reference_size"] == 60000
    assert meta["optimizer"] == {"name": "Adam"} and meta["batch_size"] == 8
    assert meta["n_complete"] == 1


def test_checkpoint_protocol_and_custom_scalars(tmp_path):
    path = tmp_path / "run"
    with NoiseStore.create(
        path, coordinates=make_coords(4), protocol="checkpoint", scalars=("loss", "batch_loss")
    ) as store:
        store.append(rows(range(3), 4), step=np.arange(3), scalars={"batch_loss": [1, 2, 3]})
    store = NoiseStore.open(path)
    assert store.protocol == "checkpoint" and store.scalar_names == ("loss", "batch_loss")
    np.testing.assert_array_equal(store.scalar("batch_loss"), [1, 2, 3])
    with pytest.raises(SgnMemoryError, match="unknown scalar 'lr'"):
        store.scalar("lr")


# ------------------------------------------------------------------------------ reading


def test_read_noise_selections(small_store):
    store = NoiseStore.open(small_store)
    full = rows(range(20), 12).astype(np.float32)
    np.testing.assert_array_equal(
        store.read_noise(rows=slice(3, 9), coords=[5, 0, 5]), full[3:9][:, [5, 0, 5]]
    )
    np.testing.assert_array_equal(store.read_noise(rows=slice(None, None, 3)), full[::3])
    np.testing.assert_array_equal(store.read_noise(rows=slice(None, None, -2)), full[::-2])
    np.testing.assert_array_equal(
        store.read_noise(rows=[-1, 0], coords=slice(2, 4)), full[[-1, 0], 2:4]
    )
    np.testing.assert_array_equal(store.read_noise(rows=4), full[4])
    mask = np.arange(12) % 5 == 0
    np.testing.assert_array_equal(store.read_noise(coords=mask), full[:, mask])
    np.testing.assert_array_equal(store.read_noise(rows=slice(15, 100)), full[15:])
    with pytest.raises(IndexError, match="out of range"):
        store.read_noise(rows=[20])
    with pytest.raises(IndexError, match="out of range"):
        store.read_noise(coords=[-13])


@pytest.mark.parametrize("block", [None, 1, 5, 7, 12, 100])
def test_iter_coord_blocks_covers_every_coordinate(small_store, block):
    store = NoiseStore.open(small_store)
    parts = list(store.iter_coord_blocks(block))
    width = store.chunk_shape[1] if block is None else block
    assert parts[0][0].start == 0 and parts[-1][0].stop == store.n_coords
    for (a, _), (b, _) in itertools.pairwise(parts):
        assert a.stop == b.start
    for cols, data in parts:
        assert data.shape == (20, cols.stop - cols.start) and 0 < data.shape[1] <= width
        assert data.dtype == np.float32
    np.testing.assert_array_equal(np.hstack([d for _, d in parts]), store.read_noise())


def test_reprs_are_short(small_store):
    store = NoiseStore.open(small_store)
    assert "n_complete=20" in repr(store) and len(repr(store)) < 300
    assert repr(store.coordinates) == (
        "CoordinateMap(k=12, parameters=6, layers=3, "
        "flat_index=[shape=(12,), median=0.5, range=[0, 1]])"
    )
    assert "steps=0..19" in repr(store)


# ------------------------------------------------------------------------------ user errors


def test_coordinate_map_validation():
    with pytest.raises(SgnMemoryError, match="one entry per coordinate"):
        CoordinateMap(np.array(["a", "b"]), np.arange(3), np.array(["", ""]))
    with pytest.raises(SgnMemoryError, match="non-negative; entry 1 is -4"):
        CoordinateMap(np.array(["a", "b"]), np.array([0, -4]), np.array(["", ""]))
    with pytest.raises(SgnMemoryError, match="must hold strings"):
        CoordinateMap(np.arange(2), np.arange(2), np.array(["", ""]))
    with pytest.raises(SgnMemoryError, match="must hold integers"):
        CoordinateMap(np.array(["a"]), np.array([0.5]), np.array([""]))
    with pytest.raises(SgnMemoryError, match="must be 1-D"):
        CoordinateMap(np.array([["a"]]), np.array([[0]]), np.array([[""]]))
    coords = CoordinateMap(["a", "b"], [1, 2], ["x", "y"])  # lists are fine
    assert len(coords) == 2 and coords.flat_index.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        coords.flat_index[0] = 7


def test_create_refuses_bad_arguments(tmp_path):
    coords = make_coords(4)
    cases = [
        (dict(protocol="epoch"), "protocol must be one of"),
        (dict(scalars=("loss", "a/b")), "scalar names must start"),
        (dict(scalars=("loss", "loss")), "must be unique"),
        (dict(attrs={"n_complete": 3}), "set by the NoiseStore itself"),
        (dict(chunk_rows=0), "chunk_rows must be a positive integer"),
        (dict(max_pending_blocks=0), "max_pending_blocks must be"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SgnMemoryError, match=message):
            NoiseStore.create(tmp_path / "x", coordinates=coords, **kwargs)
    with pytest.raises(SgnMemoryError, match="must be a CoordinateMap"):
        NoiseStore.create(tmp_path / "x", coordinates=np.arange(4))
    with pytest.raises(SgnMemoryError, match="at least one coordinate"):
        NoiseStore.create(tmp_path / "x", coordinates=CoordinateMap([], [], []))
    assert not (tmp_path / "x").exists()


def test_create_never_clobbers_what_is_not_a_store(small_store, tmp_path):
    with pytest.raises(SgnMemoryError, match="already exists; pass overwrite=True"):
        NoiseStore.create(small_store, coordinates=make_coords(3))
    NoiseStore.create(small_store, coordinates=make_coords(3), overwrite=True).close()
    assert NoiseStore.open(small_store).n_complete == 0
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "chapter1.tex").write_text("precious")
    with pytest.raises(SgnMemoryError, match="refusing to overwrite"):
        NoiseStore.create(other, coordinates=make_coords(3), overwrite=True)
    assert (other / "chapter1.tex").read_text() == "precious"
    (tmp_path / "file").write_text("")
    with pytest.raises(SgnMemoryError, match="it is a file"):
        NoiseStore.create(tmp_path / "file", coordinates=make_coords(3))
    empty = tmp_path / "empty"
    empty.mkdir()
    NoiseStore.create(empty, coordinates=make_coords(3)).close()  # an empty directory is fine


def test_append_refuses_bad_rows(tmp_path, small_store):
    with NoiseStore.create(tmp_path / "other", coordinates=make_coords(4)) as store:
        cases = [
            (lambda: store.append(np.zeros(5), step=0), r"shape \(4,\) or \(r, 4\)"),
            (lambda: store.append(np.zeros((2, 4)), step=0), "2 ints, one per row"),
            (lambda: store.append(np.zeros(4), step=1.5), "step must be an int"),
            (lambda: store.append(np.zeros(4) + 1j, step=0), "real numbers"),
            (lambda: store.append(np.zeros(4), step=0, scalars={"los": 1}), "unknown scalar"),
            (
                lambda: store.append(np.zeros((2, 4)), step=[0, 1], scalars={"loss": [1, 2, 3]}),
                "must be a number or 2 numbers",
            ),
        ]
        for call, message in cases:
            with pytest.raises(SgnMemoryError, match=message):
                call()
        assert store.n_appended == 0  # a refused call appends nothing
    with pytest.raises(SgnMemoryError, match="is closed"):
        store.append(np.zeros(4), step=0)
    reader = NoiseStore.open(small_store)
    with pytest.raises(SgnMemoryError, match="open read-only"):
        reader.append(np.zeros(12), step=0)
    with pytest.raises(SgnMemoryError, match="open read-only"):
        reader.update_attrs(note="x")
    reader.close()  # a no-op for a reader


# ------------------------------------------------------------------------------ background errors


def _break_noise_chunks(path: Path) -> None:
    """Make every write of a noise chunk fail: the chunk folder becomes a plain file."""
    shutil.rmtree(path / "noise" / "c", ignore_errors=True)
    (path / "noise" / "c").write_text("")


def test_writer_thread_error_is_raised_on_the_next_call(tmp_path):
    path = tmp_path / "run"
    store = NoiseStore.create(path, coordinates=make_coords(3), chunk_rows=2)
    store.append(rows(range(2), 3), step=[0, 1])
    store.flush()
    _break_noise_chunks(path)
    store.append(rows(range(2, 4), 3), step=[2, 3])  # handed off; the thread fails on it
    wait_for(lambda: store._writer.error is not None)
    with pytest.raises(OSError) as info:  # the thread's own exception, as is
        store.append(row(4, 3), step=4)
    assert any("writer thread while writing rows 2-3" in note for note in info.value.__notes__)
    with pytest.raises(RuntimeError, match="failed earlier") as again:
        store.flush()
    assert again.value.__cause__ is info.value
    store.close()  # already reported: stops the thread without raising again
    assert store.n_complete == 2


def test_writer_thread_error_is_raised_by_close(tmp_path):
    path = tmp_path / "run"
    store = NoiseStore.create(path, coordinates=make_coords(3), chunk_rows=2, max_pending_blocks=1)
    _break_noise_chunks(path)
    for t in range(9):  # more blocks than the queue holds: a failed thread must not deadlock
        try:
            store.append(row(t, 3), step=t)
        except OSError:
            break
    else:
        with pytest.raises(OSError):
            store.close()
    store.close()
    assert not store._writer.thread.is_alive()


# ------------------------------------------------------------------------------ damaged stores


def _set_attr(key, value):
    return lambda p: edit_json(p / "zarr.json", lambda m: m["attributes"].__setitem__(key, value))


def _replace_array(name, shape, dtype):
    def damage(p):
        shutil.rmtree(p / name)
        zarr.open_group(p, mode="r+").create_array(name, shape=shape, dtype=dtype)

    return damage


DAMAGE = {
    "not a zarr group": (lambda p: (p / "zarr.json").unlink(), "not a zarr group: it has no"),
    "zarr v2": (
        lambda p: ((p / "zarr.json").unlink(), (p / ".zgroup").write_text("{}")),
        "zarr v2 store",
    ),
    "bad json": (lambda p: (p / "zarr.json").write_text("{oops"), "cannot be read as JSON"),
    "foreign group": (
        _set_attr("format", "someone.else"),
        "zarr group but not a NoiseStore",
    ),
    "no n_complete": (_set_attr("n_complete", "many"), "invalid n_complete attribute"),
    "negative n_complete": (_set_attr("n_complete", -1), "invalid n_complete attribute"),
    "bad protocol": (_set_attr("protocol", "epoch"), "has protocol 'epoch'"),
    "missing noise": (lambda p: shutil.rmtree(p / "noise"), "missing the array 'noise'"),
    "missing steps": (lambda p: shutil.rmtree(p / "steps"), "missing the array 'steps'"),
    "missing scalar": (
        lambda p: shutil.rmtree(p / "scalars" / "lr"),
        "missing the array 'scalars/lr'",
    ),
    "missing coordinates": (
        lambda p: shutil.rmtree(p / "coordinates" / "layer"),
        "missing the array 'coordinates/layer'",
    ),
    "wrong dtype": (_replace_array("steps", (20,), "float32"), "'steps' is 1-D float32"),
    "coordinate lengths": (
        _replace_array("coordinates/flat_index", (11,), "int64"),
        "coordinate map arrays have inconsistent lengths",
    ),
    "noise width": (
        _replace_array("noise", (20, 13), "float32"),
        "noise has 13 columns but the coordinate map has 12",
    ),
    "n_complete too large": (
        _set_attr("n_complete", 21),
        "n_complete = 21 but the array 'noise' has only 20 rows",
    ),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_open_says_what_is_wrong(small_store, case):
    damage, message = DAMAGE[case]
    damage(small_store)
    with pytest.raises(InvalidStoreError, match=message) as info:
        NoiseStore.open(small_store)
    assert "\n" not in str(info.value) and type(info.value) is InvalidStoreError


def test_open_paths_that_are_not_stores(tmp_path):
    with pytest.raises(InvalidStoreError, match="the path does not exist"):
        NoiseStore.open(tmp_path / "nowhere")
    (tmp_path / "file.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(InvalidStoreError, match="is a file, not a NoiseStore"):
        NoiseStore.open(tmp_path / "file.npy")
    zarr.create_array(tmp_path / "array", shape=(3,), dtype="f4")
    with pytest.raises(InvalidStoreError, match="is a zarr array, not a group"):
        NoiseStore.open(tmp_path / "array")


def test_rows_past_n_complete_are_ignored(small_store):
    """A writer killed while growing its arrays leaves them longer, and of different lengths."""
    group = zarr.open_group(small_store, mode="r+")
    group["steps"].resize((30,))
    group["scalars/loss"].resize((8192,))
    store = NoiseStore.open(small_store)
    assert store.n_complete == 20 and store.steps.shape == (20,)
    assert store.scalar("loss").shape == (20,) and store.read_noise().shape == (20, 12)


@pytest.mark.parametrize(
    ("version", "message"), [(SCHEMA_VERSION + 1, "newer than"), (0, "older than")]
)
def test_open_checks_the_schema_version(small_store, version, message):
    _set_attr("schema_version", version)(small_store)
    with pytest.raises(SchemaVersionError, match=message):
        NoiseStore.open(small_store)


# ------------------------------------------------------------------------------ crash safety

_WRITER_SCRIPT = """
import sys
import numpy as np
from sgn_memory.store import CoordinateMap, NoiseStore

path, k, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
coords = CoordinateMap(np.array(["w"] * k), np.arange(k), np.array(["fc"] * k))
store = NoiseStore.create(path, coordinates=coords, chunk_rows=8, flush_interval=None)
assert "torch" not in sys.modules  # the store never imports torch
print("ready", flush=True)
t = 0
while True:
    store.append(
        np.random.default_rng([seed, t]).standard_normal(k),
        step=3 * t,
        scalars={"loss": float(t), "lr": 1.0 / (t + 1)},
    )
    if t % 37 == 36:
        store.flush()  # partial blocks too: the next write rewrites a half-filled chunk
    if t % 50 == 0:
        print(t, flush=True)
    t += 1
"""


@pytest.mark.parametrize("target", [1, 120, 500])
def test_sigkill_leaves_a_store_that_opens_with_every_complete_row(tmp_path, target):
    path, k = tmp_path / "run", 24
    log = (tmp_path / "stdout").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER_SCRIPT, str(path), str(k), str(SEED)],
        stdout=log,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        wait_for(lambda: (tmp_path / "stdout").read_text().startswith("ready"), timeout=20)
        # polling with open() also checks that readers never see a half-written state
        wait_for(lambda: NoiseStore.open(path).n_complete >= target, timeout=20)
        time.sleep(np.random.default_rng(target).uniform(0, 0.03))  # a moment within a write
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
        log.close()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    store = NoiseStore.open(path)
    n = store.n_complete
    assert n >= target
    expected = np.stack([np.random.default_rng([SEED, t]).standard_normal(k) for t in range(n)])
    np.testing.assert_array_equal(store.read_noise(), expected.astype(np.float32))
    np.testing.assert_array_equal(store.steps, 3 * np.arange(n))
    np.testing.assert_array_equal(store.scalar("loss"), np.arange(n))
    np.testing.assert_array_equal(store.scalar("lr"), 1.0 / (np.arange(n) + 1))
    assert "torch" not in store.attrs["software"]
