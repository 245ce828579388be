"""Tests of experiments.escape: the escape-time study, end to end and piece by piece.

The basin-exit rule is checked on L(w) = 1 + w^2 (a one-parameter linear model on labels +-1 of
mean zero), where gradient descent has a closed form: with step lr the iterate is multiplied by
1 - 2 lr each step, so the step at which the loss first exceeds 1 + delta is known exactly, and
with minibatches of two labels the iterate stays at the minimum until the first batch whose two
labels agree (probability 3/7 per batch for four +1 and four -1).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments.data import DataSpec, load_dataset  # noqa: E402
from experiments.escape import (  # noqa: E402
    ESCAPE_DEFAULTS,
    _escape,
    _escape_columns,
    _mean_cell,
    dense_hessian_eigenvalues,
    loss_paths,
    resolve_settings,
    run_escape,
    saddle_network,
)
from experiments.optim import make_optimizer  # noqa: E402
from experiments.sharpness import top_hessian_eigenvalue  # noqa: E402
from sgn_memory.sde import Interval  # noqa: E402

PRESET = Path(__file__).resolve().parents[1] / "experiments" / "presets" / "escape.toml"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config() -> dict:
    return {
        "name": "tiny",
        "kind": "escape",
        "escape": {
            "seed": 1,
            "n_bootstrap": 19,
            "sde": {
                "hursts": [0.4, 0.6],
                "scalings": ["fbm"],
                "n_paths": 40,
                "n_steps": 1500,
                "dt": 0.02,
            },
            "sgd": {
                "dataset_kwargs": {
                    "n_train": 96,
                    "n_test": 16,
                    "d": 4,
                    "hidden": [6],
                    "noise": 0.3,
                },
                "model_kwargs": {"depth": 1, "width": 6},
                "sharp": {"batch_size": 0, "lr": 0.05, "steps": 100},
                "flat": {"batch_size": 8, "lr": 0.2, "steps": 100},
                "polish_steps": 20,
                "lbfgs_iters": 10,
                "sharpness_iters": 8,
                "batch_sizes": [8],
                "lrs": [0.05],
                "runs": 3,
                "max_steps": 60,
                "noise_steps": 256,
                "coordinates": 12,
                "n_surrogates": 1,
            },
            "saddle": {
                "dataset_kwargs": {
                    "n_train": 48,
                    "n_test": 8,
                    "d": 3,
                    "hidden": [4],
                    "m": 2,
                    "noise": 0.1,
                },
                "width": 3,
                "optimizers": ["sgd", "sam"],
                "momenta": [0.0],
                "batch_sizes": [16],
                "rhos": [0.005],
                "runs": 3,
                "max_steps": 150,
            },
        },
    }


def _snapshot(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()
    }


# ------------------------------------------------------------------------------ end to end
def test_tiny_config_runs_end_to_end_and_a_rerun_skips(tmp_path):
    import pandas as pd

    out = tmp_path / "escape"
    lines: list[str] = []
    counts = run_escape(tiny_config(), out, log=lines.append)
    assert counts == {"done": 3, "skipped": 0, "failed": 0}, "\n".join(lines)
    sde = pd.read_csv(out / "sde_escape.csv")
    assert len(sde) == 2 * 2  # H x {flat, sharp}, one scaling
    assert set(sde.well) == {"flat", "sharp"} and set(sde.scaling) == {"fbm"}
    assert {"km_mean", "km_median_low", "mean_restricted", "approx_qs_mean"} <= set(sde.columns)
    sgd = pd.read_csv(out / "sgd_escape.csv")
    assert sorted(sgd.minimum) == ["flat", "sharp"]
    assert (sgd.lambda_max > 0).all() and sgd.hurst_whittle.between(0, 1).all()
    assert len(pd.read_csv(out / "sgd_escape_times.csv")) == 2 * 3
    saddle = pd.read_csv(out / "saddle_escape.csv")
    assert list(saddle.optimizer) == ["sgd", "sam"]
    assert (saddle.hessian_lambda_min < 0).all() and (saddle.hessian_n_negative > 0).all()
    for name in ("escape.md", "sde_escape.md", "sgd_escape.md", "saddle_escape.md"):
        assert (out / name).stat().st_size > 0
    for name in ("escape_sde.png", "escape_sgd_hurst.png", "escape_saddle_survival.png"):
        assert (out / "plots" / name).stat().st_size > 0
    text = (out / "escape.md").read_text()
    assert "## 1." in text and "## 2." in text and "## 3." in text and "Verdict" in text
    assert (out / "noise" / "sgd-flat-b8-lr0.05").is_dir()  # the NoiseCollector's store

    before = _snapshot(out)
    counts = run_escape(tiny_config(), out, log=lines.append)
    assert counts == {"done": 0, "skipped": 3, "failed": 0}
    assert _snapshot(out) == before  # nothing rewritten

    # a changed setting redoes that part only
    config = tiny_config()
    config["escape"]["saddle"]["runs"] = 4
    counts = run_escape(config, out, log=lines.append)
    assert counts == {"done": 1, "skipped": 2, "failed": 0}
    assert len(pd.read_csv(out / "saddle_escape_times.csv")) == 2 * 4
    after = _snapshot(out)
    assert after["sde_escape.csv"] == before["sde_escape.csv"]
    assert after["saddle_escape.csv"] != before["saddle_escape.csv"]

    # --force redoes every part, and the results are reproduced exactly
    tables = {n: (out / n).read_text() for n in ("sde_escape.csv", "saddle_escape.csv")}
    counts = run_escape(config, out, log=lines.append, force=True)
    assert counts == {"done": 3, "skipped": 0, "failed": 0}
    assert _snapshot(out)["sde_escape.csv"] != after["sde_escape.csv"]
    assert {n: (out / n).read_text() for n in tables} == tables


def test_preset_resolves_and_unknown_keys_are_errors():
    raw = tomllib.loads(PRESET.read_text())
    assert raw["kind"] == "escape" and raw["name"] == "escape"
    settings = resolve_settings(raw)
    assert settings["sgd"]["runs"] >= 20 and settings["saddle"]["runs"] >= 20
    assert set(settings) == set(ESCAPE_DEFAULTS)

    def bad(config, match):
        with pytest.raises(ValueError, match=match):
            resolve_settings(config)

    bad({"kind": "escape", "bogus_top": 1}, "bogus_top")
    bad({"escape": {"sedd": {}}}, "sedd")
    bad({"escape": {"sgd": {"batch_size": [8]}}}, "batch_size")
    bad({"escape": {"sgd": {"sharp": {"lr": 0.1, "momentum": 0.9}}}}, "momentum")
    bad({"escape": {"saddle": {"runs": "20"}}}, "runs")
    bad({"escape": {"saddle": {"max_steps": 101, "check_every": 2}}}, "multiple")
    bad({"kind": "training"}, "kind")
    with pytest.raises(ValueError, match="bogus"):
        run_escape({"escape": {"bogus": 1}}, Path("/nonexistent/never-created"))


# ------------------------------------------------------------------------------ the saddle
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_origin_of_a_two_layer_network_is_a_strict_saddle(activation):
    data = load_dataset("teacher_student", n_train=64, n_test=8, d=5, hidden=(6,), m=3, seed=2)
    width = 4
    net = saddle_network(data, width, activation)
    assert all(float(p.detach().abs().max()) == 0 for p in net.parameters())
    eig = dense_hessian_eigenvalues(net, data.loss_fn(), data)
    assert eig[0] < 0 < eig[-1]
    # theory: +-(2/m) s_i(C), C = mean y x^T, each `width` times; zeros otherwise
    x, y = data.x_train.double(), data.y_train.double()
    s = np.linalg.svd((y.T @ x / len(x)).numpy(), compute_uv=False) * 2 / data.n_outputs
    expected = np.sort(np.concatenate([np.repeat(s, width), -np.repeat(s, width)]))
    nonzero = eig[np.abs(eig) > 1e-5 * eig[-1]]
    np.testing.assert_allclose(nonzero, expected, rtol=1e-4, atol=1e-6)
    lanczos = top_hessian_eigenvalue(
        net, data.loss_fn(), [(data.x_train, data.y_train)], which="LA", tol=1e-6, max_iter=60
    )
    assert lanczos.eigenvalue == pytest.approx(eig[-1], rel=1e-4)
    assert lanczos.ritz_values[0] == pytest.approx(eig[0], rel=1e-4)


# ------------------------------------------------------------------------------ basin exit
def quadratic_toy(n: int = 8) -> DataSpec:
    """L(w) = mean_i (w - y_i)^2 = 1 + w^2 for labels +-1 of mean 0 (half each)."""
    x = torch.ones(n, 1)
    y = torch.tensor([1.0, -1.0] * (n // 2)).reshape(n, 1)
    return DataSpec("toy", "regression", x, y, x[:2], y[:2], (1,), 1)


def toy_model(w0: float) -> torch.nn.Linear:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(w0)
    return model


def sgd(lr: float):
    return lambda params: make_optimizer("sgd", params, lr=lr)


SETTINGS = {"confidence": 0.95, "n_bootstrap": 0}


@pytest.mark.parametrize("check_every", [1, 3])
def test_basin_exit_of_unstable_gradient_descent_is_at_the_predicted_step(check_every):
    # lr = 1.5: w_t = (1 - 2 lr)^t w0 = (-2)^t w0, excess loss 4^t w0^2 = 1e-4 4^t
    data, delta, w0 = quadratic_toy(), 0.5, 0.01
    domain = Interval(high=1.0 + delta)
    paths = loss_paths(
        toy_model(w0),
        data.loss_fn(),
        data,
        optimizer=sgd(1.5),
        batch_size=data.n_train,
        runs=2,
        max_steps=30,
        check_every=check_every,
        domain=domain,
        seeds=[0, 1],
    )
    t_exit = math.ceil(math.log(delta / w0**2) / math.log(4))  # first t with 4^t w0^2 > delta
    assert t_exit == 7
    esc = _escape(paths, domain, check_every, SETTINGS, 0)
    expected = check_every * math.ceil(t_exit / check_every)  # seen at the next check
    np.testing.assert_array_equal(esc.times, [expected, expected])
    assert not esc.mean_restricted and esc.mean == expected
    # stopped process: the path stays at its exit value
    k = expected // check_every
    assert (paths[:, k:] == paths[:, k : k + 1]).all() and paths[0, k] > 1 + delta


def test_stable_descent_never_leaves_and_the_restricted_mean_is_flagged():
    data = quadratic_toy()
    domain = Interval(high=1.0 + 0.01)
    paths = loss_paths(
        toy_model(0.05),
        data.loss_fn(),
        data,
        optimizer=sgd(0.25),
        batch_size=data.n_train,
        runs=4,
        max_steps=40,
        check_every=4,
        domain=domain,
        seeds=range(4),
    )
    # w halves every step: the loss only falls (up to float32 rounding of 1 + w^2)
    assert np.all(np.diff(paths, axis=1) <= 1e-6) and paths[:, -1].max() < 1 + 1e-6
    esc = _escape(paths, domain, 4, SETTINGS, 0)
    assert esc.censored.all() and esc.censored_fraction == 1.0
    assert esc.mean_restricted and esc.mean == esc.horizon == 40.0
    assert math.isinf(esc.median)
    row = _escape_columns(esc)
    assert row["mean_restricted"] and row["n_escaped"] == 0
    assert _mean_cell({**row}).startswith("≥ 40")


def test_minibatch_escape_time_follows_the_first_pure_batch():
    # B = 2 of four +1 and four -1 labels, lr = 0.25: w' = w/2 + mean(y_B)/2, so w stays 0 until
    # a batch whose labels agree (probability 3/7 for the first batch), then jumps to +-1/2:
    # excess 1/4 > delta
    data = quadratic_toy()
    domain = Interval(high=1.0 + 0.2)
    runs = 300
    paths = loss_paths(
        toy_model(0.0),
        data.loss_fn(),
        data,
        optimizer=sgd(0.25),
        batch_size=2,
        runs=runs,
        max_steps=60,
        check_every=1,
        domain=domain,
        seeds=range(100, 100 + runs),
    )
    esc = _escape(paths, domain, 1, SETTINGS, 0)
    assert not esc.censored.any()
    p_first = np.mean(esc.times == 1)
    assert abs(p_first - 3 / 7) < 4 * math.sqrt(3 / 7 * 4 / 7 / runs)
    assert esc.survival(1.0) == pytest.approx(1 - p_first)
    # before its exit, every path sits exactly at the minimum
    for path, t in zip(paths, esc.times.astype(int), strict=True):
        np.testing.assert_array_equal(path[:t], 1.0)


def test_loss_paths_refuses_a_start_outside_the_basin():
    data = quadratic_toy()
    with pytest.raises(ValueError, match="outside the basin"):
        loss_paths(
            toy_model(1.0),
            data.loss_fn(),
            data,
            optimizer=sgd(0.1),
            batch_size=2,
            runs=1,
            max_steps=4,
            check_every=1,
            domain=Interval(high=1.5),
            seeds=[0],
        )
