"""Tests of sgn_memory.analyze: the battery per series, summaries, inputs and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import sgn_memory as sgn
from sgn_memory.analyze import analyze, open_source
from sgn_memory.errors import InsufficientDataError, InvalidStoreError, SgnMemoryError

N = 2048


def fgn_columns(h, k, seed):
    return sgn.fgn(N, h, size=k, rng=seed).T  # steps x series


def test_known_hurst_and_baselines_across_runs(tmp_path):
    """Two runs of exact fGn (H = 0.3 and 0.8): medians near the truth (Whittle's SD at
    n = 2048 is ~0.015, so 0.02 on a median of 60 is ~6 SE), shuffled baselines near 1/2,
    and H minus baseline with an interval on the right side of 0."""
    np.save(tmp_path / "low.npy", fgn_columns(0.3, 60, 1))
    np.save(tmp_path / "high.npy", fgn_columns(0.8, 60, 2))
    a = analyze([tmp_path / "low.npy", tmp_path / "high.npy"])
    runs = a.runs.set_index("run")
    assert list(runs.index) == ["low.npy", "high.npy"]
    assert abs(runs.loc["low.npy", "hurst_whittle_median"] - 0.3) < 0.02
    assert abs(runs.loc["high.npy", "hurst_whittle_median"] - 0.8) < 0.02
    for run, sign in (("low.npy", -1), ("high.npy", 1)):
        for key in ("rs", "dfa", "whittle"):
            assert abs(runs.loc[run, f"hurst_{key}_baseline_mean"] - 0.5) < 0.03
            lo, hi = runs.loc[run, f"hurst_{key}_excess_ci"]
            assert sign * lo > 0 and sign * hi > 0
    assert len(a.series) == 120
    # Gaussian series: the normality tests reject about `level` of them
    assert runs.loc["high.npy", "gauss_shapiro_rejected"] < 0.2


def test_statistics_match_the_library_functions():
    x = fgn_columns(0.6, 20, 3)
    a = analyze(x, acf_lags=3)
    s = a.series
    np.testing.assert_allclose(s["hurst_dfa"], sgn.hurst_dfa(x.T).hurst)
    np.testing.assert_allclose(s["hurst_whittle"], sgn.hurst_whittle(x.T).hurst)
    np.testing.assert_allclose(s["lo_pvalue"], sgn.long_memory_test(x.T).pvalue)
    np.testing.assert_allclose(s["gauss_anderson_pvalue"], sgn.gaussianity(x.T).pvalue["anderson"])
    np.testing.assert_allclose(s["stable_alpha"], sgn.fit_stable(x.T).alpha)
    xc = x[:, 0] - x[:, 0].mean()
    assert s["acf_2"][0] == pytest.approx((xc[:-2] @ xc[2:]) / (xc @ xc))


def test_blocks_do_not_change_the_numbers():
    x = fgn_columns(0.7, 30, 4)
    one = analyze(x, block=1024).series
    many = analyze(x, block=7).series
    # equal up to the order of floating-point reductions (BLAS blocks differ with batch size)
    for c in ("hurst_rs", "hurst_dfa", "hurst_whittle", "lo_pvalue", "stable_alpha", "acf_1"):
        np.testing.assert_allclose(one[c], many[c], rtol=1e-12, atol=1e-14)


def test_store_input_layers_subsample_and_preset(tmp_path):
    from sgn_memory.store import CoordinateMap, NoiseStore

    k = 40
    coords = CoordinateMap(
        param_name=np.array(["a.weight"] * 20 + ["b.weight"] * 20),
        flat_index=np.r_[np.arange(20), np.arange(20)],
        layer=np.array(["a"] * 20 + ["b"] * 20),
    )
    noise = fgn_columns(0.5, k, 5)
    with NoiseStore.create(tmp_path / "run", coordinates=coords) as store:
        store.append(noise, step=np.arange(N), scalars={"loss": np.linspace(2, 1, N)})
    a = analyze(tmp_path / "run", max_coords=30, seed=1, preset="tan2021")
    assert len(a.series) == 30
    assert set(a.summary["layer"]) == {"(all)", "a", "b"}
    again = analyze(tmp_path / "run", max_coords=30, seed=1, preset="tan2021")
    np.testing.assert_array_equal(a.series["column"], again.series["column"])
    h = a.series["hurst_rs"].to_numpy()
    kept = h[(h >= 0.01) & (h <= 0.99)]
    assert a.runs.loc[0, "tan2021_mean_hurst"] == pytest.approx(kept.mean())
    # the tan2021 preset is the uncorrected R/S of their windows
    col = a.series["column"].to_numpy()
    np.testing.assert_allclose(h, sgn.hurst_rs(noise[:, col].T, preset="tan2021").hurst)
    assert open_source(tmp_path / "run").scalars["loss"][0] == 2


def test_degenerate_series_are_nan_and_the_rest_is_analysed():
    x = fgn_columns(0.5, 5, 6)
    x[:, 1] = 3.0
    x[10, 2] = np.nan
    a = analyze(x)
    assert np.isnan(a.series.loc[1, "hurst_whittle"]) and np.isnan(a.series.loc[2, "hurst_rs"])
    assert np.isfinite(a.series.loc[[0, 3, 4], "hurst_whittle"]).all()


def test_csv_with_header_and_stable_test(tmp_path):
    x = fgn_columns(0.5, 3, 7)
    path = tmp_path / "noise.csv"
    np.savetxt(path, x, delimiter=",", header="u0,u1,u2", comments="")
    a = analyze(path, stable_test=True, n_bootstrap=20)
    assert list(a.series["name"]) == ["u0", "u1", "u2"]
    assert {"stable_pvalue", "stable_alpha_drift"} <= set(a.series.columns)


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(SgnMemoryError, match="no such file"):
        analyze(tmp_path / "missing.npy")
    (tmp_path / "notastore").mkdir()
    with pytest.raises(InvalidStoreError):
        analyze(tmp_path / "notastore")
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SgnMemoryError, match="never loaded"):
        analyze(tmp_path / "pickled.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(SgnMemoryError, match="empty"):
        analyze(tmp_path / "empty.npy")
    np.save(tmp_path / "flat.npy", np.zeros(N))
    with pytest.raises(SgnMemoryError, match="2-D"):
        analyze(tmp_path / "flat.npy")
    np.save(tmp_path / "short.npy", np.random.default_rng(0).standard_normal((50, 3)))
    with pytest.raises(InsufficientDataError, match="at least 128"):
        analyze(tmp_path / "short.npy")
    (tmp_path / "x.txt").write_text("1,2\n")
    with pytest.raises(SgnMemoryError, match="unknown input"):
        analyze(tmp_path / "x.txt")


def test_public_name_is_lazy_and_callable():
    import subprocess
    import sys

    code = (
        "import sys, sgn_memory as sgn; assert 'pandas' not in sys.modules; "
        "import numpy as np; a = sgn.analyze(sgn.fgn(256, 0.5, size=2, rng=0).T); "
        "import sgn_memory.analyze; b = sgn.analyze(sgn.fgn(256, 0.5, size=2, rng=0).T); "
        "print(type(a).__name__, type(b).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["Analysis", "Analysis"]


def test_over_training_windows_follow_a_change_of_memory(tmp_path):
    """H = 0.3 for the first half of training and 0.8 for the second: the first window reads
    ~0.3, the last ~0.8 (Whittle SD at n = 1024 is ~0.02; medians of 40 series)."""
    from sgn_memory.store import CoordinateMap, NoiseStore

    first = fgn_columns(0.3, 40, 8)[:2048]
    second = fgn_columns(0.8, 40, 9)[:2048]
    x = np.concatenate([first, second])  # 4096 steps
    coords = CoordinateMap(
        param_name=np.array(["w"] * 40), flat_index=np.arange(40), layer=np.array(["w"] * 40)
    )
    with NoiseStore.create(tmp_path / "run", coordinates=coords) as store:
        store.append(x, step=np.arange(4096) * 10, scalars={"b_simple": np.full(4096, 7.0)})
    a = analyze(tmp_path / "run")
    w = a.over_training
    assert len(w) == 7 and list(w["start_step"][:2]) == [0, 5120]
    assert w["end_step"].iloc[-1] == 40950
    assert abs(w["hurst_whittle_median"].iloc[0] - 0.3) < 0.03
    assert abs(w["hurst_whittle_median"].iloc[-1] - 0.8) < 0.03
    assert (w["hurst_whittle_q25"] <= w["hurst_whittle_q75"]).all()
    assert list(a.per_step.columns[:2]) == ["run", "step"]
    assert (a.per_step["b_simple"] == 7.0).all() and len(a.per_step) == 4096
    assert analyze(tmp_path / "run", window=0).over_training.empty
    with pytest.raises(SgnMemoryError, match="window"):
        analyze(tmp_path / "run", window=50)


def test_dask_local_cluster_gives_the_same_numbers(tmp_path):
    """Blocks spread over a LocalCluster of 2 worker processes (stores reopened by path on
    the workers) give exactly the in-process results: every block has its own seed."""
    distributed = pytest.importorskip("dask.distributed")
    from sgn_memory.store import CoordinateMap, NoiseStore

    x = fgn_columns(0.6, 24, 10)
    coords = CoordinateMap(
        param_name=np.array(["w"] * 24), flat_index=np.arange(24), layer=np.array(["w"] * 24)
    )
    with NoiseStore.create(tmp_path / "run", coordinates=coords) as store:
        store.append(x, step=np.arange(N))
    np.save(tmp_path / "arr.npy", x[:, :10])
    inputs = [tmp_path / "run", tmp_path / "arr.npy"]
    local = analyze(inputs, block=5, max_coords=20, seed=3)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = analyze(inputs, block=5, max_coords=20, seed=3, scheduler=cluster)
    import pandas as pd

    pd.testing.assert_frame_equal(local.series, remote.series)
    pd.testing.assert_frame_equal(local.over_training, remote.over_training)
