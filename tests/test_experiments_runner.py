"""The experiment runner: configurations, a sweep end to end, resumption, failures, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments.__main__ import main  # noqa: E402
from experiments.config import (  # noqa: E402
    RUN_DEFAULTS,
    ConfigError,
    load_config,
    parse_override,
    preset_names,
)
from sgn_memory.store import NoiseStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# a run of a few seconds: 130 steps recorded (the battery needs 128), a 130-batch probe,
# 5 Lanczos steps
STEPS = 130
TINY = {
    "steps": STEPS,
    "coordinates": 120,
    "probe_at": [STEPS],
    "probe_batches": STEPS,
    "sharpness_iters": 5,
    "sharpness_samples": 256,
    "max_coords": 120,
    "dataset_kwargs": {"n_train": 512, "n_test": 256},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Small models run fastest, and without oversubscription, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def tiny_toml(tmp_path: Path, groups: str, seeds="[0]") -> Path:
    defaults = "\n".join(f"{k} = {_toml(v)}" for k, v in TINY.items())
    return write_config(
        tmp_path / "tiny.toml",
        f'name = "tiny"\nseeds = {seeds}\n[defaults]\n{defaults}\n{groups}',
    )


def _toml(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(u)}" for k, u in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(u) for u in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v).lower() if isinstance(v, bool) else str(v)


# ------------------------------------------------------------------------------ configuration


def test_presets_load_and_expand():
    assert {"quick", "paper"} <= set(preset_names())
    quick = load_config("quick")
    assert len(quick.runs) == 1
    run = quick.runs[0]
    assert run.settings["dataset"] == "mnist1d" and run.settings["probe_at"] == [3000]
    paper = load_config("paper")
    assert set(paper.groups) >= {"architectures", "datasets", "strategies", "batch_lr"}
    assert len(paper.seeds) >= 3
    assert len({r.run_id for r in paper.runs}) == len(paper.runs)


def test_grid_variants_seeds_and_overrides(tmp_path):
    path = tiny_toml(
        tmp_path,
        '[[group]]\nname = "g"\nlr = [0.01, 0.1]\ngrid = {batch_size = [8, 16, 32]}\n'
        '[[group.variant]]\noptimizer = "sgd"\n[[group.variant]]\noptimizer = "sam"\n',
        seeds="[0, 1]",
    )
    config = load_config(str(path))
    assert len(config.runs) == 2 * 3 * 2 * 2
    combos = {
        (r.settings["lr"], r.settings["batch_size"], r.settings["optimizer"], r.seed)
        for r in config.runs
    }
    assert len(combos) == 24
    assert all(r.settings["steps"] == STEPS for r in config.runs)
    # unchanged defaults come from RUN_DEFAULTS
    assert all(r.settings["momentum"] == RUN_DEFAULTS["momentum"] for r in config.runs)
    over = load_config(str(path), {"steps": 7, "probe_at": [7]})  # a probe within the run
    assert all(r.settings["steps"] == 7 for r in over.runs)
    # the hash (and so the run id) follows the settings
    assert {r.spec_hash for r in over.runs}.isdisjoint({r.spec_hash for r in config.runs})
    assert load_config(str(path)).runs[0].run_id == config.runs[0].run_id  # stable


def test_parse_override():
    assert parse_override("steps=500") == ("steps", 500)
    assert parse_override("probe_at=[1, 2]") == ("probe_at", [1, 2])
    assert parse_override("model=lenet5") == ("model", "lenet5")
    assert parse_override("dataset_kwargs={n_train = 10}") == ("dataset_kwargs", {"n_train": 10})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("stepz=5")


@pytest.mark.parametrize(
    "body, match",
    [
        ("[defaults]\nstepz = 5\n", "unknown setting"),
        ("bogus = 1\n", "unknown top-level"),
        ("seeds = []\n", "seeds"),
        ('[[group]]\nname = "a b"\n', "needs a name"),
        ('[[group]]\nname = "g"\n[[group]]\nname = "g"\n', "identical settings"),
        ("[defaults\n", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, body, match):
    path = write_config(tmp_path / "bad.toml", body)
    with pytest.raises(ConfigError, match=match):
        load_config(str(path))


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    assert main(["no-such-preset"]) == 2
    assert "presets" in capsys.readouterr().err
    path = write_config(tmp_path / "bad.toml", "[defaults]\nstepz = 5\n")
    assert main([str(path)]) == 2
    assert main(["quick", "--set", "nope=1"]) == 2
    assert main(["quick", "--only", "nogroup"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 3 and "Traceback" not in err


# ------------------------------------------------------------------------------ a sweep


def test_sweep_end_to_end_resume_and_failure(tmp_path):
    damaged = tmp_path / "damaged"  # the files exist (the checks pass), their content is not IDX
    damaged.mkdir()
    for name in ("train-images", "train-labels", "t10k-images", "t10k-labels"):
        (damaged / f"{name}-idx{3 if 'images' in name else 1}-ubyte").write_bytes(b"not IDX")
    path = tiny_toml(
        tmp_path,
        '[[group]]\nname = "g"\noptimizer = ["sgd", "stablesam"]\n'
        '[[group]]\nname = "broken"\ndataset = "mnist_idx"\n'
        f'dataset_kwargs = {{root = "{damaged}"}}\n',
    )
    out = tmp_path / "out"
    assert main([str(path), "--out", str(out), "--no-progress"]) == 1  # the broken run failed
    config = load_config(str(path))
    good = [r for r in config.runs if r.group == "g"]
    for spec in good:
        run_dir = out / "runs" / spec.run_id
        result = json.loads((run_dir / "result.json").read_text())
        assert result["spec_hash"] == spec.spec_hash and result["diverged_at"] is None
        traj = NoiseStore.open(run_dir / "trajectory")
        assert traj.n_complete == STEPS and traj.attrs["protocol"] == "trajectory"
        assert traj.attrs["reference"] == "exact" and traj.n_coords == 120
        probe = NoiseStore.open(run_dir / f"probe-step{STEPS:06d}")
        assert probe.n_complete == STEPS and probe.attrs["protocol"] == "checkpoint"
        # the probe and the trajectory record the same coordinates
        np.testing.assert_array_equal(probe.coordinates.flat_index, traj.coordinates.flat_index)
        if spec.settings["optimizer"] == "stablesam":
            gamma = traj.scalar("gradient_scale")
            assert np.isfinite(gamma).all() and (gamma > 0).all()
            assert (traj.scalar("accumulation") == 2).all()  # two forward passes per step
        assert set(result["stores"]) == {"trajectory", f"probe-step{STEPS:06d}"}
        for row in result["stores"].values():
            assert row["n_series"] > 0 and 0 < row["hurst_whittle_median"] < 1
        assert result["sharpness"] > 0
        assert (run_dir / "report" / "report.md").is_file()
    broken = next(r for r in config.runs if r.group == "broken")
    failed = json.loads((out / "runs" / broken.run_id / "failed.json").read_text())
    assert "IDX" in failed["error"]
    table = (out / "results.md").read_text()
    assert "## g" in table and "stablesam" in table
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # two runs, two stores each

    # a rerun skips what finished, and redoes a run killed half-way (no result.json)
    first = {r.run_id: (out / "runs" / r.run_id / "result.json").stat().st_mtime_ns for r in good}
    killed = out / "runs" / good[0].run_id
    (killed / "result.json").unlink()
    (killed / "trajectory" / "zarr.json").write_text("{damaged")
    assert main([str(path), "--out", str(out), "--no-progress", "--only", "g"]) == 0
    after = {r.run_id: (out / "runs" / r.run_id / "result.json").stat().st_mtime_ns for r in good}
    assert after[good[1].run_id] == first[good[1].run_id]  # skipped
    assert (killed / "result.json").is_file()
    assert NoiseStore.open(killed / "trajectory").n_complete == STEPS  # redone from scratch


def test_runs_are_reproducible(tmp_path):
    """Same seed, same settings: bitwise the same recorded noise."""
    path = tiny_toml(tmp_path, '[[group]]\nname = "g"\n')
    for out in ("a", "b"):
        assert (
            main(
                [
                    str(path),
                    "--out",
                    str(tmp_path / out),
                    "--no-progress",
                    "--set",
                    "probe_at=[]",
                    "--set",
                    "sharpness=false",
                ]
            )
            == 0
        )
    spec = load_config(str(path), {"probe_at": [], "sharpness": False}).runs[0]
    a, b = (NoiseStore.open(tmp_path / o / "runs" / spec.run_id / "trajectory") for o in "ab")
    np.testing.assert_array_equal(a.read_noise(), b.read_noise())


def test_quick_preset_smaller_runs_from_the_command_line(tmp_path):
    """The README's main job, shortened, as a user runs it (a fresh interpreter)."""
    out = tmp_path / "quick"
    cmd = [
        sys.executable,
        "-m",
        "experiments",
        "quick",
        "--out",
        str(out),
        "--threads",
        "1",
        "--set",
        "steps=130",
        "--set",
        "probe_at=[130]",
        "--set",
        "probe_batches=130",
        "--set",
        "sharpness_iters=5",
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 run(s) done" in done.stderr
    assert (out / "results.md").is_file() and (out / "summary.csv").is_file()
    report = next((out / "runs").glob("quick/*/report"))
    assert (report / "summary.json").is_file() and (report / "hurst_histograms.png").is_file()


def test_identical_settings_in_two_groups_run_once(tmp_path):
    path = tiny_toml(tmp_path, '[[group]]\nname = "a"\n[[group]]\nname = "b"\n')
    out = tmp_path / "out"
    args = [str(path), "--out", str(out), "--no-progress", "--set", "probe_at=[]"]
    assert main(args) == 0
    a, b = load_config(str(path), {"probe_at": []}).runs
    assert a.spec_hash == b.spec_hash and a.run_id != b.run_id
    ra = json.loads((out / "runs" / a.run_id / "result.json").read_text())
    rb = json.loads((out / "runs" / b.run_id / "result.json").read_text())
    assert rb["reused_from"] == a.run_id and rb["group"] == "b" and rb["run_id"] == b.run_id
    assert rb["stores"] == ra["stores"]
    assert NoiseStore.open(out / "runs" / b.run_id / "trajectory").n_complete == STEPS
    assert main(args) == 0  # both finished now: skipped


def test_sampling_epoch_partitions_iid_does_not():
    from experiments.data import load_dataset
    from experiments.runner import Shuffled

    data = load_dataset("digits")
    n, b = data.n_train, 32
    for sampling in ("epoch", "iid"):
        batches = list(Shuffled(data, b, seed=0, sampling=sampling))
        assert len(batches) == n // b and all(len(x) == b for x, _ in batches)
        # identify samples by their pixels: each batch holds B distinct samples
        rows = [torch.unique(x.reshape(b, -1), dim=0).shape[0] for x, _ in batches]
        assert min(rows) == b
        keys = torch.cat([x.reshape(b, -1) for x, _ in batches])
        distinct = torch.unique(keys, dim=0).shape[0]
        if sampling == "epoch":  # one epoch: every sample at most once
            assert distinct == len(keys)
        else:  # independent draws repeat samples across batches: ~ n (1 - e^{-k/n}) distinct
            k = len(keys)
            expected = n * (1 - np.exp(-k / n))
            assert abs(distinct - expected) < 5 * np.sqrt(expected)


def test_settings_added_later_keep_old_hashes():
    from experiments.config import RunSpec

    settings = dict(RUN_DEFAULTS)
    old = {k: v for k, v in settings.items() if k != "sampling"}
    assert RunSpec("g", 0, settings).spec_hash == RunSpec("g", 0, old).spec_hash
    iid = RunSpec("g", 0, {**settings, "sampling": "iid"})
    assert iid.spec_hash != RunSpec("g", 0, settings).spec_hash and "-iid-" in iid.run_id


def test_epoch_model_bridges_and_its_hurst_deficit():
    """Batches that partition each epoch sum to zero over it: the noise is a chain of bridges,
    anti-persistent at the epoch scale; independent batches give H = 1/2."""
    import sgn_memory as sgn
    from experiments.epoch_model import epoch_sampling_noise

    n, b = 600, 40  # 15 batches per epoch
    x = epoch_sampling_noise(n, b, 15 * 20, 50, sampling="epoch", rng=1)
    epochs = x.reshape(50, 20, 15).sum(axis=2)
    np.testing.assert_allclose(epochs, 0.0, atol=1e-12)
    iid = epoch_sampling_noise(n, b, 15 * 20, 50, sampling="iid", rng=1)
    assert np.abs(iid.reshape(50, 20, 15).sum(axis=2)).min() > 1e-6
    # per-batch variance of a batch mean without replacement: (1/B)(n-B)/(n-1) per-sample var
    var = x.var(axis=1).mean()
    assert abs(var - (1 / b) * (n - b) / (n - 1) * (1 - 1 / n)) < 0.1 * var
    # Whittle H on 1500 steps: about 1/2 for iid (median of 200 series, SE ~ 0.002), clearly
    # below for 15 batches per epoch (0.39 in the calibration of experiments.epoch_model)
    iid = epoch_sampling_noise(1200, 80, 1500, 200, sampling="iid", rng=2)
    h_iid = sgn.hurst_whittle(iid).hurst
    h_ep = sgn.hurst_whittle(epoch_sampling_noise(1200, 80, 1500, 200, rng=2)).hurst
    assert abs(np.median(h_iid) - 0.5) < 0.01
    assert np.median(h_ep) < 0.43


def test_batch_reference_runs_draw_a_fresh_batch_per_step_and_probe_exactly(tmp_path):
    """reference = "batch": the trajectory reference is M samples drawn afresh per step (the
    store says so), the checkpoint probe still uses the exact full gradient over the data."""
    path = tiny_toml(tmp_path, '[[group]]\nname = "g"\nreference = "batch"\nreference_batch = 64\n')
    assert main([str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    spec = load_config(str(path)).runs[0]
    run = tmp_path / "out" / "runs" / spec.run_id
    trajectory = NoiseStore.open(run / "trajectory").attrs
    assert trajectory["reference"] == "batch" and trajectory["reference_size"] == 64
    assert trajectory["reference_sampling"] == "random_subset"
    assert trajectory["reference_seed"] == spec.seed
    probe = NoiseStore.open(run / f"probe-step{STEPS:06d}").attrs
    assert probe["reference"] == "exact" and probe["reference_size"] == 512
