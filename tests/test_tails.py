"""Tests of sgn_memory.tails: normality battery, stable fitting and testing, tail indices.

Reference implementations: scipy.stats (shapiro, normaltest, jarque_bera, levy_stable and its
McCulloch start), statsmodels (normal_ad, lilliefors).  Stable samples in accuracy tests come
from scipy's levy_stable.rvs, an implementation independent of ours.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as st

import sgn_memory as sgn
from sgn_memory.errors import DegenerateSeriesWarning, InsufficientDataError, SgnMemoryError
from sgn_memory.tails import _gaussian as G
from sgn_memory.tails import _stable as S
from sgn_memory.tails import (
    benjamini_hochberg,
    s0_to_s1_loc,
    stable_rvs,
    tail_diagnostics,
)


def scipy_stable(alpha, beta, size, seed):
    """S0 draws from scipy (S1 draws shifted by beta tan(pi alpha/2)); independent of ours."""
    x = st.levy_stable.rvs(alpha, beta, size=size, random_state=np.random.default_rng(seed))
    return x if alpha == 1 else x + beta * np.tan(np.pi * alpha / 2)


# ------------------------------------------------------------------------------ gaussianity


@pytest.mark.parametrize("n", [8, 11, 12, 50, 999, 4000])
def test_battery_matches_scipy_and_statsmodels(n):
    from statsmodels.stats.diagnostic import lilliefors, normal_ad

    rng = np.random.default_rng(n)
    x = np.concatenate([rng.standard_normal((3, n)), rng.standard_t(6, (3, n))])
    res = sgn.gaussianity(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = np.array([st.shapiro(r) for r in x])
        nt = st.normaltest(x, axis=1)
    jb = st.jarque_bera(x, axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = normal_ad(x, axis=1)
    lf = np.array([lilliefors(r, pvalmethod="table")[0] for r in x])
    # scipy's swilk keeps some single-precision constants: agreement ~1e-9, not 1e-15
    np.testing.assert_allclose(res.statistic["shapiro"], sw[:, 0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(res.pvalue["shapiro"], sw[:, 1], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.statistic["dagostino"], nt.statistic, rtol=1e-10)
    np.testing.assert_allclose(res.pvalue["dagostino"], nt.pvalue, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(res.statistic["jarque_bera"], jb.statistic, rtol=1e-10)
    np.testing.assert_allclose(res.pvalue["jarque_bera"], jb.pvalue, rtol=1e-8, atol=1e-14)
    # statsmodels takes log(norm.cdf) and overflows to inf in far tails; we use log_ndtr
    ok = np.isfinite(ad[0])
    assert np.isfinite(res.statistic["anderson"]).all()
    # ... and log(cdf) keeps ~8 digits for |z| ~ 5, hence rtol 1e-7 on heavy-tailed rows
    np.testing.assert_allclose(res.statistic["anderson"][ok], ad[0][ok], rtol=1e-7)
    np.testing.assert_allclose(res.pvalue["anderson"][ok], ad[1][ok], rtol=1e-6, atol=1e-14)
    np.testing.assert_allclose(res.statistic["lilliefors"], lf, rtol=1e-12)


def test_shapiro_small_n_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (3, 4, 5, 7):
        x = rng.standard_normal(n)
        xs = np.sort(x) - x.mean()
        w = (xs @ G._shapiro_coefficients(n)) ** 2 / (xs @ xs)
        ref = st.shapiro(x)
        assert w == pytest.approx(ref.statistic, abs=1e-8)
        assert G._shapiro_pvalue(np.array([w]), n)[0] == pytest.approx(ref.pvalue, abs=1e-7)


def test_shapiro_above_5000_uses_a_subsample():
    x = np.random.default_rng(1).standard_normal(12_000)
    res = sgn.gaussianity(x, tests="shapiro")
    idx = np.round(np.linspace(0, 11_999, 5000)).astype(int)
    ref = st.shapiro(x[idx])
    assert float(res.statistic["shapiro"]) == pytest.approx(ref.statistic, abs=1e-8)
    assert "5000 evenly spaced" in res.settings["shapiro_subsample"]


def test_size_on_gaussian_series():
    """Every test rejects 5% +- 4 Monte-Carlo SE of Gaussian series (n = 2000, 2000 series)."""
    x = np.random.default_rng(11).standard_normal((2000, 2000))
    res = sgn.gaussianity(x)
    se = np.sqrt(0.05 * 0.95 / 2000)
    for t in res.tests:
        assert abs(res.rejected_fraction[t] - 0.05) < 4 * se, (t, res.rejected_fraction[t])
        # BH at 5% over 2000 true nulls rejects at most a handful
        assert res.rejected_fraction_bh[t] < 0.005


@pytest.mark.parametrize("n", [300, 1000])
def test_lilliefors_table_holds_its_level(n):
    """statsmodels' table rejects ~3.5% here; our simulated table must give 5% +- 4 SE."""
    reps = 8000
    x = np.random.default_rng(n + 5).standard_normal((reps, n))
    p = sgn.gaussianity(x, tests="lilliefors").pvalue["lilliefors"]
    for level in (0.05, 0.01):
        se = np.sqrt(level * (1 - level) / reps)
        assert abs(np.mean(p <= level) - level) < 4 * se


def test_power_on_student_t5():
    x = np.random.default_rng(2).standard_t(5, (400, 2000))
    res = sgn.gaussianity(x)
    for t in res.tests:
        assert res.rejected_fraction[t] >= 0.9, t


def test_pvalues_are_uniform_under_the_null():
    """KS of the p-values of each test against U(0, 1) (n = 500, 3000 series)."""
    x = np.random.default_rng(3).standard_normal((3000, 500))
    res = sgn.gaussianity(x, tests=("shapiro", "dagostino", "anderson", "lilliefors"))
    for t in res.tests:
        p = res.pvalue[t]
        if t == "lilliefors":  # interpolated table: check the lower half where decisions are
            p = p[p < 0.5]
            assert st.kstest(p / 0.5, "uniform").pvalue > 1e-3
        else:
            assert st.kstest(p, "uniform").pvalue > 1e-3, t


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(4)
    p = np.concatenate([rng.uniform(size=900), rng.uniform(0, 1e-3, size=100)])
    ours = benjamini_hochberg(p, 0.05)
    adjusted = st.false_discovery_control(p, method="bh")
    np.testing.assert_array_equal(ours, adjusted <= 0.05)
    withnan = np.append(p, np.nan)
    assert not benjamini_hochberg(withnan, 0.05)[-1]


def test_battery_shapes_axis_float32_and_degenerate():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 400))
    x[1, 2] = 1.0  # constant series
    with pytest.warns(DegenerateSeriesWarning):
        res = sgn.gaussianity(x.astype(np.float32))
    assert res.pvalue["anderson"].shape == (2, 3)
    assert np.isnan(res.pvalue["shapiro"][1, 2]) and res.n_series == 5
    moved = sgn.gaussianity(np.moveaxis(x[0], -1, 0), axis=0)
    np.testing.assert_allclose(
        moved.pvalue["dagostino"], sgn.gaussianity(x[0]).pvalue["dagostino"], rtol=1e-12
    )
    with pytest.raises(InsufficientDataError):
        sgn.gaussianity(np.ones(5))
    with pytest.raises(SgnMemoryError):
        sgn.gaussianity(x[0], tests=("kolmogorov",))


def test_projection_test_holds_level_and_detects_a_non_normal_direction():
    rng = np.random.default_rng(6)
    reps = 200
    gaussian = rng.standard_normal((reps, 20, 1000))
    res = sgn.gaussianity_projections(gaussian, n_projections=16, rng=0)
    assert np.mean(res.pvalue["shapiro"] <= 0.05) <= 0.05 + 4 * np.sqrt(0.05 * 0.95 / reps)
    # multivariate t(5): a common random scale per step makes every direction t(5)
    scale = np.sqrt(5 / rng.chisquare(5, (50, 1, 1000)))
    heavy = rng.standard_normal((50, 20, 1000)) * scale
    res = sgn.gaussianity_projections(heavy, n_projections=16, rng=0)
    assert np.mean(res.pvalue["anderson"] <= 0.05) > 0.9
    assert res.directions.shape == (16, 20)


# ------------------------------------------------------------------------------ stable laws


@pytest.mark.parametrize(("alpha", "beta"), [(1.5, 0.5), (0.7, -0.5), (1.0, 0.5), (1.9, 0.9)])
def test_sampler_matches_scipy_cdf(alpha, beta):
    x = stable_rvs(alpha, beta, size=4000, rng=1, scale=2.0, loc=0.5)
    loc1 = float(s0_to_s1_loc(alpha, beta, 2.0, 0.5))
    law = st.levy_stable(alpha, beta, loc=loc1, scale=2.0)  # scipy default: S1
    assert st.levy_stable.parameterization == "S1"
    assert st.kstest(x, law.cdf).pvalue > 1e-3


def test_mcculloch_equals_scipy_fitstart():
    from scipy.stats._levy_stable import _fitstart_S0

    for alpha, beta, seed in [(1.5, 0.0, 1), (1.2, 0.5, 2), (0.8, -0.3, 3), (1.9, 0.2, 4)]:
        x = scipy_stable(alpha, beta, 3000, seed)
        q = np.percentile(x, [5, 25, 50, 75, 95])
        ours = np.array(S._mcculloch_from_quantiles(*q))
        a, b, d0, g = _fitstart_S0(x)
        np.testing.assert_allclose(ours, [a, b, g, d0], rtol=1e-12, atol=1e-12)


def test_fit_stable_accuracy_on_independent_samples():
    """alpha RMSE <= 0.04 at n = 2000 (200 replicates per alpha; Monte-Carlo SE of an RMSE of
    0.035 is ~0.002) and scale/location recovered; scipy's sampler, not ours."""
    for alpha in (1.2, 1.5, 1.8, 2.0):
        x = np.stack(
            [scipy_stable(alpha, 0.0, 2000, round(100 * alpha) + 1000 * i) for i in range(200)]
        )
        x = 3.0 * x + 1.0
        fit = sgn.fit_stable(x)
        assert np.sqrt(np.mean((fit.alpha - alpha) ** 2)) <= 0.04, alpha
        assert abs(np.median(fit.scale) / 3.0 - 1) < 0.03
        assert abs(np.median(fit.loc) - 1.0) < 0.05
        mc = sgn.fit_stable(x, method="mcculloch")
        assert np.sqrt(np.mean((mc.alpha - alpha) ** 2)) < 0.08


def test_fit_stable_skewed_and_equivariant():
    x = scipy_stable(1.4, 0.6, (100, 4000), 7)
    fit = sgn.fit_stable(x)
    assert abs(np.mean(fit.beta) - 0.6) < 0.06
    assert abs(np.mean(fit.alpha) - 1.4) < 0.02
    moved = sgn.fit_stable(5 * x - 2)
    np.testing.assert_allclose(moved.alpha, fit.alpha, atol=1e-9)
    np.testing.assert_allclose(moved.scale, 5 * fit.scale, rtol=1e-9)
    np.testing.assert_allclose(moved.loc, 5 * fit.loc - 2, atol=1e-8)


def test_stable_test_size_and_power():
    reps = 150
    stable = stable_rvs(1.6, 0.0, size=(reps, 2000), rng=8)
    res = sgn.stable_test(stable, n_bootstrap=100, rng=1)
    assert np.mean(res.pvalue <= 0.05) <= 0.10
    laplace = np.random.default_rng(9).laplace(size=(reps, 2000))
    res_l = sgn.stable_test(laplace, n_bootstrap=100, rng=1)
    assert np.mean(res_l.pvalue <= 0.05) > 0.9
    # aggregation: stable alpha stays, finite-variance alpha climbs towards 2
    assert abs(np.mean(res.aggregation_drift)) < 0.05
    assert np.mean(res_l.aggregation_drift) > 0.2


def test_tail_index_on_stable_laws():
    for alpha in (1.2, 1.6):
        x = scipy_stable(alpha, 0.0, (200, 4000), int(alpha * 10))
        m = sgn.tail_index(x)
        assert abs(np.median(m.alpha) - alpha) < 0.05
        h = sgn.tail_index(x, method="hill")
        assert abs(np.median(h.alpha) - alpha) < 0.15
        assert np.median(h.stderr) == pytest.approx(np.median(h.alpha) / np.sqrt(63), rel=0.05)
    assert sgn.tail_index(x).settings["block"] == 63


def test_hill_known_answer_on_pareto():
    """Pareto(alpha=3) tails: Hill is unbiased for exact power laws (mean 1/alpha over k)."""
    rng = np.random.default_rng(12)
    x = rng.pareto(3.0, (500, 5000)) + 1.0
    h = sgn.tail_index(x, method="hill", k=500)
    assert abs(np.mean(h.inv_alpha) - 1 / 3) < 3 * np.std(h.inv_alpha) / np.sqrt(500)


def test_tail_diagnostics_shapes_and_monotone():
    x = stable_rvs(1.5, size=3000, rng=4)
    d = tail_diagnostics(x)
    assert np.all(np.diff(d.threshold) <= 0) and np.all(np.diff(d.survival) >= 0)
    assert np.all(d.stable_survival > 0)
    # the stable tail follows the data far out; the Gaussian one does not
    far = d.survival < 0.01
    ratio_stable = np.median(d.stable_survival[far] / d.survival[far])
    ratio_gauss = np.median(d.gaussian_survival[far] / d.survival[far])
    assert 0.5 < ratio_stable < 2 and ratio_gauss < 0.5
    assert d.qq_theoretical.shape == d.qq_sample.shape


@pytest.mark.slow
def test_mle_improves_the_likelihood_of_its_start():
    """scipy's ML (S1) converted back to S0 must not have a lower likelihood than our start:
    a wrong S0/S1 location conversion would fail this (~25 s)."""
    x = stable_rvs(1.5, 0.3, size=150, rng=2) * 2 + 1

    def nll(fit):
        a, b, g, d = (float(v) for v in (fit.alpha, fit.beta, fit.scale, fit.loc))
        law = st.levy_stable(a, b, loc=float(s0_to_s1_loc(a, b, g, d)), scale=g)
        return -np.sum(law.logpdf(x))

    with warnings.catch_warnings():
        mle = sgn.fit_stable(x, method="mle")
    start = sgn.fit_stable(x)
    assert mle.method == "mle" and mle.alpha.shape == ()
    assert nll(mle) <= nll(start) + 1e-6


def test_a_point_mass_gets_nan_fits_and_does_not_sink_the_batch():
    """A gradient coordinate that is exactly 0 on most minibatches (a dead ReLU unit) has a zero
    interquartile range: no stable law fits it.  Its fit and p-value are NaN with one warning; the
    other series of the batch are fitted and tested exactly as without it."""
    rng = np.random.default_rng(3)
    good = stable_rvs(1.5, 0.3, size=(3, 1000), rng=4)
    spike = np.where(rng.random(1000) < 0.7, 0.0, rng.standard_normal(1000) * 1e-5)
    data = np.vstack([spike, good])
    for method in ("koutrouvelis", "mcculloch"):  # (mle starts from koutrouvelis: NaN rows skip)
        with pytest.warns(DegenerateSeriesWarning, match="1 of 4 series have a zero interq"):
            fit = sgn.fit_stable(data, method=method)
        assert np.isnan(fit.alpha[0]) and np.isnan(fit.scale[0])
        alone = sgn.fit_stable(good, method=method)
        np.testing.assert_array_equal(fit.alpha[1:], alone.alpha)
    with pytest.warns(DegenerateSeriesWarning, match="zero interquartile"):
        test = sgn.stable_test(data, n_bootstrap=19, rng=0)
    assert np.isnan(test.pvalue[0]) and np.isfinite(test.pvalue[1:]).all()
    alone = sgn.stable_test(good, n_bootstrap=19, rng=0)
    np.testing.assert_allclose(test.statistic[1:], alone.statistic, rtol=1e-12)  # BLAS rows


def test_dagostino_k2_of_an_exactly_symmetric_sample_has_no_skewness_term():
    """Sample third moment exactly 0 (interleaved +-1 with zeros: every partial sum is exact).
    The published transform gives Z_skew = delta * asinh(0) = 0, so K^2 is the kurtosis term
    alone; scipy's normaltest replaces Y = 0 by 1 and reports K^2 larger by ~1.08 at n = 20."""
    from scipy import stats

    x = np.array([-1.0, 1.0] * 5 + [0.0] * 10)
    assert np.sum((x - x.mean()) ** 3) == 0.0
    k2 = float(sgn.gaussianity(x).statistic["dagostino"])
    z_kurt = float(stats.kurtosistest(x).statistic)  # Anscombe & Glynn (1983), as published
    assert k2 == pytest.approx(z_kurt**2, rel=1e-12)
    assert float(stats.normaltest(x).statistic) - k2 == pytest.approx(1.08, abs=0.01)
    # away from Y = 0 nothing changes: scipy's K^2 on a skewed sample
    y = np.random.default_rng(3).exponential(size=40)
    assert float(sgn.gaussianity(y).statistic["dagostino"]) == pytest.approx(
        float(stats.normaltest(y).statistic), rel=1e-10
    )
