"""Hurst estimators and long-memory tests: known answers, theory, peers, invariances, edge cases."""

import importlib
import warnings

import nolds
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.signal
import scipy.special
import scipy.stats

import sgn_memory as sgn
from sgn_memory.errors import DegenerateSeriesWarning, InsufficientDataError, SgnMemoryError

hurst_common = importlib.import_module("sgn_memory.hurst._common")
hurst_rs_module = importlib.import_module("sgn_memory.hurst._rs")
hurst_dfa_module = importlib.import_module("sgn_memory.hurst._dfa")
hurst_whittle_module = importlib.import_module("sgn_memory.hurst._whittle")
hurst_tests_module = importlib.import_module("sgn_memory.hurst._memory_tests")

ESTIMATORS = {
    "rs": sgn.hurst_rs,
    "dfa": sgn.hurst_dfa,
    "whittle": sgn.hurst_whittle,
}


@pytest.fixture(scope="module")
def fgn_grid():
    """200 exact fGn series of length 2048 at each H of the accuracy goal."""
    return {
        h: sgn.fgn(2048, h, size=200, rng=int(1000 * h)) for h in (0.2, 0.35, 0.5, 0.65, 0.8, 0.95)
    }


# ================================================================== peers on identical settings


@pytest.mark.parametrize("n, hurst, seed", [(2048, 0.7, 0), (3001, 0.3, 1), (1000, 0.5, 2)])
def test_rs_uncorrected_matches_nolds(n, hurst, seed):
    x = sgn.fgn(n, hurst, rng=seed)
    scales = sgn.rs_scales(n)
    ours = sgn.hurst_rs(x, scales=scales, corrected=False)
    theirs, (log_n, log_rs, _) = nolds.hurst_rs(
        x, nvals=scales, fit="poly", corrected=False, debug_data=True
    )
    assert float(ours.hurst) == pytest.approx(theirs, abs=1e-10)
    np.testing.assert_allclose(np.log(ours.fluctuation), log_rs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.log(ours.scales), log_n)


def test_tan2021_preset_matches_nolds():
    x = sgn.fgn(3000, 0.45, rng=3)
    ours = sgn.hurst_rs(x, preset="tan2021")
    theirs = nolds.hurst_rs(x, nvals=list(sgn.TAN2021_RS_SCALES), fit="poly", corrected=False)
    assert float(ours.hurst) == pytest.approx(theirs, abs=1e-10)
    assert ours.settings["preset"] == "tan2021" and ours.method == "rs"


def test_rs_corrected_close_to_nolds():
    # nolds approximates E[R/S] by 1/sqrt(n pi / 2) above n = 340; we use log-gamma throughout.
    x = sgn.fgn(2048, 0.6, rng=4)
    scales = sgn.rs_scales(2048)
    theirs = nolds.hurst_rs(x, nvals=scales, fit="poly", corrected=True)
    assert float(sgn.hurst_rs(x, scales=scales).hurst) == pytest.approx(theirs, abs=1e-3)
    small = scales[scales <= 340]
    theirs = nolds.hurst_rs(x, nvals=small, fit="poly", corrected=True)
    assert float(sgn.hurst_rs(x, scales=small).hurst) == pytest.approx(theirs, abs=1e-10)


@pytest.mark.parametrize("n, hurst, seed", [(2048, 0.7, 0), (3001, 0.2, 5), (700, 0.9, 6)])
def test_dfa1_matches_nolds(n, hurst, seed):
    x = sgn.fgn(n, hurst, rng=seed)
    scales = sgn.dfa_scales(n)
    ours = sgn.hurst_dfa(x, scales=scales, average="mean")
    theirs, (_, log_f, _) = nolds.dfa(
        x, nvals=scales, overlap=False, order=1, fit_exp="poly", debug_data=True
    )
    assert float(ours.hurst) == pytest.approx(theirs, abs=1e-10)
    np.testing.assert_allclose(np.log(ours.fluctuation), log_f, rtol=0, atol=1e-10)


@pytest.mark.parametrize("order", [2, 3])
def test_dfa_higher_order_matches_nolds(order):
    x = sgn.fgn(1500, 0.65, rng=order)
    scales = sgn.dfa_scales(1500, order=order)
    ours = sgn.hurst_dfa(x, scales=scales, order=order, average="mean")
    theirs = nolds.dfa(x, nvals=scales, overlap=False, order=order, fit_exp="poly")
    assert float(ours.hurst) == pytest.approx(theirs, abs=1e-9)


# ================================================================== theory


def test_expected_rs_matches_simulation():
    """Anis-Lloyd-Peters E[R/S] matches R/S (ddof=1) of white noise within 0.5%."""
    rng = np.random.default_rng(0)
    for s in (10, 25, 100, 400):
        x = rng.standard_normal((20, 400 * s))
        rs = sgn.hurst_rs(x, scales=[s, 2 * s], corrected=False).fluctuation[:, 0]
        # 20 series x 400 windows; relative SE of the mean ~ 0.25 / sqrt(8000) ~ 0.3%
        assert rs.mean() == pytest.approx(sgn.expected_rs(s), rel=0.01)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("hurst", [0.3, 0.5, 0.8])
def test_dfa_fluctuation_matches_exact_expectation(order, hurst):
    """E[F^2(s)] = trace((I - P P^T) Cov(profile window)) / s, exactly, for fGn input.

    The profile window is fBM at s consecutive times (plus a level that detrending removes), so
    with the root-mean-square average F(s)^2 is unbiased for that trace.
    """
    n, paths = 2048, 300
    x = sgn.fgn(n, hurst, size=paths, rng=42)
    scales = np.array([8, 16, 64, 256])
    est = sgn.hurst_dfa(x, order=order, scales=scales)
    for s, f in zip(scales, est.fluctuation.T, strict=True):
        t = np.arange(1, s + 1, dtype=float)
        cov = 0.5 * (
            t[:, None] ** (2 * hurst)
            + t[None, :] ** (2 * hurst)
            - np.abs(t[:, None] - t[None, :]) ** (2 * hurst)
        )
        p = np.polynomial.legendre.legvander(np.linspace(-1, 1, s), order)
        q, _ = np.linalg.qr(p)
        expected = np.trace((np.eye(s) - q @ q.T) @ cov) / s
        f2 = f**2
        se = f2.std(ddof=1) / np.sqrt(paths)
        # global demeaning of the input is a linear trend of the profile: removed for every order
        assert abs(f2.mean() - expected) < 4.5 * se, (s, f2.mean(), expected, se)


def test_whittle_spectral_shape_is_the_fgn_spectrum():
    """Integrating f(lambda) cos(k lambda) gives back the fGn autocovariance (up to scale)."""
    for hurst in (0.2, 0.5, 0.75):

        def f(lam, h=hurst):
            return hurst_whittle_module._fgn_spectral_shape(np.array([h]), np.array([lam]))[0, 0]

        acov = []
        for k in range(4):
            val, _ = scipy.integrate.quad(
                lambda lam, k=k: f(lam) * np.cos(k * lam), 0, np.pi, limit=400
            )
            acov.append(val)
        acov = np.array(acov) / acov[0]
        np.testing.assert_allclose(acov, sgn.fgn_autocovariance(hurst, np.arange(4)), atol=2e-6)


def test_whittle_spectral_shape_matches_truncated_sum():
    freqs = np.array([0.01, 0.5, 2.0, 3.1])
    big_k = 200000
    k = np.arange(-big_k, big_k + 1)
    for hurst in (0.1, 0.6, 0.95):
        d = 2 * hurst + 1
        # tails |k| > K by the midpoint rule: 2 * int_{K+1/2}^inf (2 pi u)^{-d} du (error ~K^{-d-2})
        tail = 2 * (2 * np.pi * (big_k + 0.5)) ** (1 - d) / ((d - 1) * 2 * np.pi)
        brute = np.array(
            [
                (1 - np.cos(lam)) * ((np.abs(lam + 2 * np.pi * k) ** -d).sum() + tail)
                for lam in freqs
            ]
        )
        brute *= (2 * np.pi) ** d
        ours = hurst_whittle_module._fgn_spectral_shape(np.array([hurst]), freqs)[0]
        np.testing.assert_allclose(ours, brute, rtol=1e-7)


def test_whittle_stderr_is_the_observed_spread(fgn_grid):
    """The Fisher-information SE matches the spread of the estimates over replicates."""
    for hurst, x in fgn_grid.items():
        est = sgn.hurst_whittle(x)
        sd = est.hurst.std(ddof=1)
        # SD of a sample SD from 200 values ~ 5%; allow 20%
        assert est.stderr.mean() == pytest.approx(sd, rel=0.2), hurst
    # Cramer-Rao standard deviation at n = 2048, H = 0.5 is about 0.013
    assert sgn.hurst_whittle(fgn_grid[0.5]).stderr.mean() == pytest.approx(0.0136, abs=0.001)


def test_bridge_range_law():
    cdf, sf = hurst_tests_module._bridge_range_cdf, hurst_tests_module._bridge_range_sf
    # Lo (1991), Table II: P(V < 0.809) = 0.025, P(V < 1.862) = 0.975
    assert cdf(np.array(0.809)) == pytest.approx(0.025, abs=5e-4)
    assert cdf(np.array(1.862)) == pytest.approx(0.975, abs=5e-4)
    # the two series agree at their junction, and cdf + sf = 1
    v = np.array([0.99999999, 1.0, 1.00000001])
    assert np.ptp(cdf(v)) < 1e-7
    grid = np.linspace(0.2, 4, 50)
    np.testing.assert_allclose(cdf(grid) + sf(grid), 1.0, atol=1e-12)
    # E[V] = sqrt(pi / 2)
    mean = scipy.integrate.quad(lambda t: float(sf(np.array(t))), 0, 12)[0]
    assert mean == pytest.approx(np.sqrt(np.pi / 2), rel=1e-8)
    # against simulated Brownian bridges
    rng = np.random.default_rng(0)
    w = np.cumsum(rng.standard_normal((4000, 4000)), axis=1) / np.sqrt(4000)
    bridge = w - np.linspace(0, 1, 4000)[None, :] * w[:, -1:]
    ranges = np.maximum(bridge.max(axis=1), 0) - np.minimum(bridge.min(axis=1), 0)
    # discretisation shrinks the range by ~0.58/sqrt(n) (~1%); compare after that correction
    ranges *= 1 + 0.5826 / np.sqrt(4000)
    assert scipy.stats.kstest(ranges, lambda t: cdf(np.asarray(t))).pvalue > 1e-3


# ================================================================== known answers on exact fGn


def pooled_rmse(estimator, grid, **kw):
    return np.sqrt(
        np.mean(np.concatenate([(estimator(x, **kw).hurst - h) ** 2 for h, x in grid.items()]))
    )


@pytest.mark.slow
def test_accuracy_goals(fgn_grid):
    """Pooled RMSE over H in {0.2, ..., 0.95}, 200 replicates, n = 2048 (goals and calibration).

    Measured (benchmarks/accuracy.py): Whittle 0.014, DFA-1 0.030, corrected R/S 0.077.  The
    Whittle and DFA bounds are the project's goals; the R/S bound is a regression guard at the
    measured value plus Monte-Carlo slack (R/S is biased toward 1/2 at extreme H whatever the
    windows; see the hurst_rs docstring).
    """
    assert pooled_rmse(sgn.hurst_whittle, fgn_grid) <= 0.018
    assert pooled_rmse(sgn.hurst_dfa, fgn_grid) <= 0.035
    assert pooled_rmse(sgn.hurst_dfa, fgn_grid, order=2) <= 0.035
    assert pooled_rmse(sgn.hurst_rs, fgn_grid) <= 0.082


def test_whittle_unbiased(fgn_grid):
    for hurst, x in fgn_grid.items():
        est = sgn.hurst_whittle(x)
        assert abs(est.hurst.mean() - hurst) < 4 * est.stderr.mean() / np.sqrt(x.shape[0]) + 0.003


def test_dfa_bias_small(fgn_grid):
    for hurst, x in fgn_grid.items():
        assert abs(sgn.hurst_dfa(x).hurst.mean() - hurst) < 0.02, hurst


def test_rs_on_white_noise():
    x = np.random.default_rng(8).standard_normal((400, 3000))
    corrected = sgn.hurst_rs(x).hurst
    assert abs(corrected.mean() - 0.5) < 0.006  # SE of the mean ~ 0.0013
    # the seed authors' settings read white noise as ~0.54 (documented in the docstring)
    preset = sgn.hurst_rs(x, preset="tan2021").hurst
    assert abs(preset.mean() - 0.54) < 0.006


def test_long_memory_test_size_and_power():
    rng = np.random.default_rng(9)
    white = rng.standard_normal((1000, 2000))
    ar = scipy.signal.lfilter([1.0], [1.0, -0.5], rng.standard_normal((1000, 2200)), axis=1)[
        :, 200:
    ]
    # binomial SE of a 5% rate over 1000 series is 0.7%
    assert 0.025 <= np.mean(sgn.long_memory_test(white).pvalue < 0.05) <= 0.08
    # short memory alone does not read as long memory (classical R/S, q = 0, rejects most AR(1))
    assert np.mean(sgn.long_memory_test(ar).pvalue < 0.05) <= 0.09
    assert np.mean(sgn.long_memory_test(ar, bandwidth=0).pvalue < 0.05) > 0.5
    persistent = sgn.fgn(2000, 0.8, size=500, rng=10)
    assert np.mean(sgn.long_memory_test(persistent).pvalue < 0.05) > 0.5
    assert np.mean(sgn.long_memory_test(persistent, alternative="greater").pvalue < 0.05) > 0.6
    assert np.mean(sgn.long_memory_test(persistent, alternative="less").pvalue < 0.05) < 0.01
    res = sgn.long_memory_test(white[:3])
    assert res.settings["bandwidth"].shape == (3,)
    assert "no long memory" in res.null_hypothesis


def test_shuffled_baseline():
    x = sgn.fgn(2048, 0.8, size=20, rng=11)
    out = sgn.shuffled_baseline(x, sgn.hurst_dfa, n_surrogates=9, rng=12)
    assert out.surrogates.shape == (20, 9)
    assert np.all(out.excess > 0.15)
    np.testing.assert_allclose(out.pvalue, 0.1)  # every surrogate below the observed H
    assert abs(out.baseline.mean() - 0.5) < 0.02
    again = sgn.shuffled_baseline(x, sgn.hurst_dfa, n_surrogates=9, rng=12)
    np.testing.assert_array_equal(out.surrogates, again.surrogates)
    white = np.random.default_rng(13).standard_normal((40, 2048))
    wb = sgn.shuffled_baseline(white, sgn.hurst_rs, n_surrogates=5, rng=14, preset="tan2021")
    assert abs(wb.excess.mean()) < 0.02
    assert "shape=" in repr(wb)


# ================================================================== invariances and API


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_affine_invariance(name):
    f = ESTIMATORS[name]
    x = sgn.fgn(1024, 0.7, size=5, rng=15)
    np.testing.assert_allclose(f(3.5 * x - 40.0).hurst, f(x).hurst, atol=1e-9)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_batch_equals_loop_and_axis(name):
    f = ESTIMATORS[name]
    x = sgn.fgn(1024, 0.6, size=(2, 3), rng=16)
    batch = f(x)
    assert batch.hurst.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert batch.hurst[i, j] == pytest.approx(float(f(x[i, j]).hurst), abs=1e-12)
    moved = f(np.moveaxis(x, -1, 1), axis=1)
    np.testing.assert_allclose(moved.hurst, batch.hurst, atol=1e-12)
    if batch.fluctuation.shape[-1]:
        assert batch.fluctuation.shape == (2, 3, batch.scales.size)


@pytest.mark.parametrize("shape", [(1024,), (1, 1024), (3, 1024)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_is_never_modified(shape, dtype):
    x = sgn.fgn(1024, 0.6, size=shape[:-1], rng=26).astype(dtype)
    copy = x.copy()
    for f in [*ESTIMATORS.values(), sgn.long_memory_test]:
        f(x)
        np.testing.assert_array_equal(x, copy)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_float32_input(name):
    f = ESTIMATORS[name]
    x = sgn.fgn(4096, 0.75, size=8, rng=17)
    np.testing.assert_allclose(f(x.astype(np.float32)).hurst, f(x).hurst, atol=2e-4)


def test_threads_do_not_change_results(monkeypatch):
    x = sgn.fgn(512, 0.6, size=300, rng=18)
    # small blocks so that every estimator splits the batch into many blocks
    monkeypatch.setattr(hurst_dfa_module, "_BLOCK_ELEMENTS", 512 * 8)
    monkeypatch.setattr(hurst_tests_module, "_BLOCK_ELEMENTS", 512 * 8)
    monkeypatch.setattr(hurst_rs_module, "_RS_BLOCK_ELEMENTS", 512 * 40)
    monkeypatch.setattr(hurst_common, "_THREADS", 2)

    def run():
        return [sgn.hurst_rs(x).hurst, sgn.hurst_dfa(x).hurst, sgn.long_memory_test(x).statistic]

    many = run()
    monkeypatch.setattr(hurst_common, "_THREADS", 1)
    one = run()
    for a, b in zip(many, one, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("min_rows", [1, 10**9])  # time-major blocks / series-major blocks
def test_rs_paths_agree_with_direct_formula(monkeypatch, min_rows):
    """Every R/S path (block layout, short-window loop, long-window reduction, overlap) equals the
    direct formula."""
    monkeypatch.setattr(hurst_rs_module, "_RS_MIN_ROWS", min_rows)
    x = sgn.fgn(1200, 0.6, rng=19)
    for overlap in (False, True):
        scales = np.array([10, 32, 33, 64, 65, 300])
        est = sgn.hurst_rs(x, scales=scales, corrected=False, overlap=overlap)
        assert est.settings["overlap"] is overlap
        for s, value in zip(scales, est.fluctuation, strict=True):
            step = s // 2 if overlap else s
            ratios = []
            for a in range(0, len(x) - s + 1, step):
                w = x[a : a + s]
                z = np.cumsum(w - w.mean())
                ratios.append((z.max() - min(z.min(), 0.0)) / w.std(ddof=1))
            assert value == pytest.approx(np.mean(ratios), rel=1e-10)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_dfa_removes_polynomial_trends(order):
    """DFA-q is blind to a degree q-1 polynomial in the increments (degree q in the profile)."""
    x = sgn.fgn(2000, 0.4, rng=20)
    t = np.linspace(-1, 1, 2000)
    trend = 5 * t ** (order - 1) + (3 * t if order > 1 else 0)
    a = sgn.hurst_dfa(x, order=order)
    b = sgn.hurst_dfa(x + trend, order=order)
    np.testing.assert_allclose(b.fluctuation, a.fluctuation, rtol=1e-8)


def test_degenerate_series_become_nan_with_one_warning():
    x = sgn.fgn(1024, 0.6, size=5, rng=21)
    x[1] = 3.0
    x[3, 100] = np.nan
    for name, f in ESTIMATORS.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = f(x)
        degenerate = [w for w in caught if issubclass(w.category, DegenerateSeriesWarning)]
        assert len(degenerate) == 1, name
        assert "2 of 5" in str(degenerate[0].message)
        assert np.isnan(est.hurst[[1, 3]]).all()
        clean = f(x[[0, 2, 4]]).hurst
        np.testing.assert_array_equal(est.hurst[[0, 2, 4]], clean)
    with pytest.warns(DegenerateSeriesWarning):
        res = sgn.long_memory_test(x)
    assert np.isnan(res.pvalue[[1, 3]]).all() and np.isfinite(res.pvalue[[0, 2, 4]]).all()


def test_too_short_input_raises_naming_the_minimum():
    with pytest.raises(InsufficientDataError, match=r"at least 52 observations"):
        sgn.hurst_rs(np.random.default_rng(0).standard_normal(40))
    with pytest.raises(InsufficientDataError, match=r"at least \d+ observations"):
        sgn.hurst_dfa(np.random.default_rng(0).standard_normal(60))
    with pytest.raises(InsufficientDataError, match="at least 32"):
        sgn.hurst_whittle(np.ones(10))
    with pytest.raises(InsufficientDataError, match="largest scale"):
        sgn.hurst_rs(np.random.default_rng(0).standard_normal(100), scales=[10, 200])
    # explicit scales allow short series
    assert np.isfinite(
        sgn.hurst_rs(np.random.default_rng(0).standard_normal(40), scales=[5, 10, 20]).hurst
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: sgn.hurst_rs(x, preset="tan2021", corrected=True), "fixes scales"),
        (lambda x: sgn.hurst_rs(x, preset="other"), "preset"),
        (lambda x: sgn.hurst_rs(x, scales=[10]), "at least two"),
        (lambda x: sgn.hurst_rs(x, scales=[1, 10]), "at least 2"),
        (lambda x: sgn.hurst_dfa(x, order=4), "order"),
        (lambda x: sgn.hurst_dfa(x, scales=[2, 10]), "at least 3"),
        (lambda x: sgn.hurst_dfa(x, average="median"), "average"),
        (lambda x: sgn.long_memory_test(x, bandwidth=-1), "bandwidth"),
        (lambda x: sgn.long_memory_test(x, method="kpss"), "method"),
        (lambda x: sgn.shuffled_baseline(x, n_surrogates=0), "n_surrogates"),
    ],
)
def test_bad_options_raise_domain_errors(call, match):
    with pytest.raises(SgnMemoryError, match=match):
        call(np.random.default_rng(0).standard_normal(3000))


def test_result_objects():
    est = sgn.hurst_dfa(sgn.fgn(1024, 0.6, size=1000, rng=22))
    text = repr(est)
    assert "shape=(1000,)" in text and len(text) < 400
    with pytest.raises(AttributeError):
        est.hurst = None
    with pytest.raises(TypeError):
        est.settings["order"] = 2
    single = sgn.hurst_whittle(sgn.fgn(1024, 0.6, rng=23))
    assert single.hurst.shape == () and isinstance(float(single.hurst), float)
    assert single.fit_range[0] == pytest.approx(2 * np.pi / 1024)


def test_whittle_warns_at_the_boundary():
    walk = np.cumsum(np.random.default_rng(24).standard_normal((3, 2048)), axis=1)
    with pytest.warns(DegenerateSeriesWarning, match="end of the search interval"):
        est = sgn.hurst_whittle(walk)
    assert np.all(est.hurst > 0.99)


def test_whittle_long_series_path_matches_table_path(monkeypatch):
    """Series too long for the cached table take the chunked path; both give the same numbers."""
    x = sgn.fgn(3000, 0.72, size=4, rng=25)
    cached = sgn.hurst_whittle(x)
    monkeypatch.setattr(hurst_whittle_module, "_WHITTLE_TABLE_ELEMENTS", 0)
    monkeypatch.setattr(hurst_whittle_module, "_WHITTLE_FREQ_CHUNK", 100)
    chunked = sgn.hurst_whittle(x)
    np.testing.assert_allclose(chunked.hurst, cached.hurst, atol=1e-10)
    np.testing.assert_allclose(chunked.stderr, cached.stderr, rtol=1e-8)


def test_whittle_information_interpolation_error():
    """Fisher information interpolated between nodes 0.01 apart: < 0.3% off the exact value."""
    n = 2048
    freqs = hurst_whittle_module._fourier_frequencies(n)
    for h in (0.105, 0.333, 0.5005, 0.777, 0.951):
        lo, hi = (
            hurst_whittle_module._fgn_spectral_shape(np.array([h + e]), freqs)[0]
            for e in (-1e-5, 1e-5)
        )
        d = (np.log(hi) - np.log(lo)) / 2e-5
        exact = ((d - d.mean()) ** 2).sum()
        assert hurst_whittle_module._whittle_information(np.array([h]), n)[0] == pytest.approx(
            exact, rel=3e-3
        )


def test_rs_float32_working_precision():
    """float32 input runs the range pass in float32: (R/S)_s within 1e-6 of the float64 pass."""
    x = sgn.fgn(4096, 0.7, size=16, rng=27).astype(np.float32)
    s = sgn.rs_scales(4096)
    single = hurst_rs_module._rs_kernel(x, s, 1)
    double = hurst_rs_module._rs_kernel(x.astype(np.float64), s, 1)
    np.testing.assert_allclose(single, double, rtol=1e-6)


def test_tan2021_mean_hurst_keeps_only_0_01_to_0_99():
    from sgn_memory.hurst import tan2021_mean_hurst

    mean, kept = tan2021_mean_hurst([0.2, 0.4, 0.005, 1.2, np.nan, 0.99, 0.01])
    assert kept == 4 and mean == pytest.approx((0.2 + 0.4 + 0.99 + 0.01) / 4)
    mean, kept = tan2021_mean_hurst([np.nan, 2.0])
    assert kept == 0 and np.isnan(mean)
