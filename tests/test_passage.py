"""First passage: Kaplan-Meier by hand, exit detection, the exponential-law check, the
approximations (exact reduction to Kramers), Monte Carlo against Kramers and against the exact
H = 1/2 mean exit time, the study table, errors."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from sgn_memory.errors import SgnMemoryError
from sgn_memory.passage import (
    brownian_mean_exit_time,
    escape_study,
    escape_times,
    kaplan_meier,
    mean_escape_time_approx,
)
from sgn_memory.passage._approx import _td_total_hazard
from sgn_memory.passage._survival import _exponential_check
from sgn_memory.sde import (
    CustomPotential,
    DoubleWell,
    Interval,
    QuadraticWell,
    QuarticDoubleWell,
    simulate_sde,
)

# ------------------------------------------------------------------ Kaplan-Meier by hand

TIMES = [1, 2, 2, 3, 4, 5]
OBSERVED = [1, 1, 0, 1, 0, 1]  # censored at 2 and at 4


def test_kaplan_meier_hand_computed_example():
    km = kaplan_meier(TIMES, OBSERVED)
    # t=1: 6 at risk, 1 event; t=2: 5 at risk (the unit censored at 2 still counts), 1 event;
    # t=3: 3 at risk, 1 event; t=5: 1 at risk, 1 event
    np.testing.assert_array_equal(km.time, [1, 2, 3, 5])
    np.testing.assert_array_equal(km.at_risk, [6, 5, 3, 1])
    np.testing.assert_array_equal(km.events, [1, 1, 1, 1])
    np.testing.assert_allclose(km.survival, [5 / 6, 2 / 3, 4 / 9, 0.0], rtol=1e-15)
    # Greenwood at t=3: (4/9)^2 (1/30 + 1/20 + 1/6) = (4/9)^2 / 4
    gw = np.array([1 / 30, 1 / 30 + 1 / 20, 1 / 4])
    np.testing.assert_allclose(km.stderr[:3], km.survival[:3] * np.sqrt(gw), rtol=1e-14)
    assert km.stderr[2] == pytest.approx(2 / 9, rel=1e-14)
    # log-log band at t=3
    z = scipy.stats.norm.ppf(0.975)
    s_ll = 0.5 / abs(math.log(4 / 9))
    assert km.lower[2] == pytest.approx((4 / 9) ** math.exp(z * s_ll), rel=1e-13)
    assert km.upper[2] == pytest.approx((4 / 9) ** math.exp(-z * s_ll), rel=1e-13)
    # step function
    np.testing.assert_allclose(km([0, 0.99, 1, 2.5, 4.9, 5, 9]), [1, 1, 5 / 6, 2 / 3, 4 / 9, 0, 0])
    # median: first time S <= 1/2; its interval from the band
    med, lo, hi = km.quantile(0.5)
    assert med == 3
    assert lo == km.time[np.flatnonzero(km.lower <= 0.5)[0]]
    assert hi == km.time[np.flatnonzero(km.upper <= 0.5)[0]]
    # restricted mean to 5: 1 + 5/6 + 2/3 + 2 * 4/9 = 61/18, and its variance
    mean, se = km.restricted_mean(5)
    assert mean == pytest.approx(61 / 18, rel=1e-14)
    var = (43 / 18) ** 2 / 30 + (14 / 9) ** 2 / 20 + (8 / 9) ** 2 / 6
    assert se == pytest.approx(math.sqrt(var), rel=1e-13)


def test_kaplan_meier_without_censoring_is_the_empirical_law():
    rng = np.random.default_rng(0)
    t = rng.exponential(2.0, 500)
    km = kaplan_meier(t, np.ones(500, bool))
    np.testing.assert_allclose(km.survival, 1 - np.arange(1, 501) / 500, atol=1e-12)
    mean, se = km.restricted_mean(t.max())
    assert mean == pytest.approx(t.mean(), rel=1e-12)
    assert se == pytest.approx(t.std() / math.sqrt(t.size), rel=1e-9)


def test_kaplan_meier_errors():
    with pytest.raises(SgnMemoryError, match="same size"):
        kaplan_meier([1, 2], [1])
    with pytest.raises(SgnMemoryError, match="finite and >= 0"):
        kaplan_meier([1, np.inf], [1, 0])
    with pytest.raises(SgnMemoryError, match="booleans"):
        kaplan_meier([1, 2], [1, 2])
    with pytest.raises(SgnMemoryError, match="confidence"):
        kaplan_meier([1, 2], [1, 1], confidence=1.0)


# ------------------------------------------------------------------ exits from arrays


def test_escape_times_from_array_paths_by_hand():
    paths = np.array(
        [
            [0.0, 0.5, 1.2, 0.3],  # leaves through 1 at index 2
            [0.0, -0.2, 0.1, 0.4],  # stays inside: censored at 3 * dt
            [0.0, 0.9, -1.5, 0.0],  # leaves through -1 at index 2
            [0.0, -1.0, 0.0, 0.0],  # touching the boundary counts as leaving, index 1
        ]
    )
    esc = escape_times(paths, domain=Interval(-1.0, 1.0), dt=0.5, n_bootstrap=0)
    np.testing.assert_array_equal(esc.times, [1.0, np.inf, 1.0, 0.5])
    np.testing.assert_array_equal(esc.censored, [False, True, False, False])
    np.testing.assert_array_equal(esc.positions, [1.2, np.nan, -1.5, -1.0])
    assert esc.horizon == 1.5 and esc.censored_fraction == 0.25 and esc.mean_restricted
    # restricted mean: S = 1 on [0, .5), 3/4 on [.5, 1), 1/4 on [1, 1.5]
    assert esc.mean == pytest.approx(0.5 + 0.375 + 0.125)
    assert esc.exponential.mean == pytest.approx((1 + 1.5 + 1 + 0.5) / 3)
    with pytest.raises(SgnMemoryError, match="start outside"):
        escape_times(paths + 2, domain=Interval(-1.0, 1.0), dt=0.5)


def test_escape_times_from_kept_paths_agree_with_recorded_exits():
    w = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
    kw = dict(hurst=0.6, sigma=1.0, dt=0.01, n_steps=2000, size=200, rng=4)
    recorded = simulate_sde(w, -1.0, domain=w.escape_domain(0), keep="final", **kw)
    free = simulate_sde(w, -1.0, **kw)  # same noise: no domain changes nothing before exits
    a = escape_times(recorded, n_bootstrap=0)
    b = escape_times(free, domain=w.escape_domain(0), n_bootstrap=0)
    np.testing.assert_allclose(a.times, b.times)
    assert a.scaling == "fbm" and a.hurst == 0.6
    thinned = simulate_sde(w, -1.0, thin=10, **kw)
    c = escape_times(thinned, domain=w.escape_domain(0), n_bootstrap=0)
    seen = np.isfinite(c.times)
    # on the coarser grid an exit is seen at the same time or later (or missed)
    assert np.all(c.times[seen] >= a.times[seen] - 1e-12)
    assert c.resolution == pytest.approx(0.1)
    with pytest.raises(SgnMemoryError, match="recorded exits"):
        escape_times(recorded, domain=Interval(-2, 0))


# ------------------------------------------------------------------ exponential law


def test_exponential_check_accepts_exponential_and_rejects_other_laws():
    # exit times on a grid of dt, censored at the horizon, as escape_times produces them
    rng = np.random.default_rng(1)
    horizon, dt, n = 30.0, 0.01, 2000
    laws = {
        "exponential": rng.exponential(10.0, n),
        "gamma3": rng.gamma(3.0, 10.0 / 3.0, n),  # same mean, cv = 0.58
    }
    res, n_exits = {}, {}
    for name, t in laws.items():
        t = dt * np.maximum(1, np.ceil(t / dt))
        times = np.where(t <= horizon, t, np.inf)
        n_exits[name] = int(np.isfinite(times).sum())
        res[name] = _exponential_check(times, horizon, dt, confidence=0.95, n_bootstrap=499, rng=2)
    assert res["exponential"].pvalue > 0.01
    assert res["gamma3"].pvalue < 0.01
    # the censored MLE of the mean covers the truth (10)
    lo, hi = res["exponential"].mean_ci
    assert lo < 10.0 < hi
    assert res["exponential"].n_events == n_exits["exponential"] < n  # some are censored


# ------------------------------------------------------------------ approximations


def test_both_approximations_reduce_exactly_to_kramers_at_half():
    w = DoubleWell(barrier=1.3, curvature=0.7, saddle_curvature=2.1)
    sigma = 0.6
    kramers = 2 * math.pi / math.sqrt(0.7 * 2.1) * math.exp(2 * 1.3 / sigma**2)
    for method in ("time-dependent", "quasi-stationary"):
        a = mean_escape_time_approx(w, hurst=0.5, sigma=sigma, method=method)
        assert a.mean == pytest.approx(kramers, rel=1e-13)
        assert a.kramers == pytest.approx(kramers, rel=1e-13)
        s = mean_escape_time_approx(w, hurst=0.5, sigma=sigma, method=method, target="saddle")
        assert s.mean == pytest.approx(kramers / 2, rel=1e-13)
        h = mean_escape_time_approx(w, hurst=0.5, sigma=sigma, method=method, horizon=kramers)
        assert h.restricted_mean == pytest.approx(kramers * (1 - math.exp(-1)), rel=1e-13)
    # given landmarks instead of a potential; two exits add their rates
    two = mean_escape_time_approx(
        hurst=0.5, sigma=sigma, barrier=[1.3, 1.3], curvature=0.7, saddle_curvature=[2.1, -2.1]
    )
    assert two.mean == pytest.approx(kramers / 2, rel=1e-13)
    # per-step scaling is the same formula with sigma dt^(1/2 - H), i.e. unchanged at H = 1/2
    p = mean_escape_time_approx(w, hurst=0.5, sigma=sigma, scaling="per-step", dt=0.01)
    assert p.mean == pytest.approx(kramers, rel=1e-13)


def test_time_dependent_approximation_is_continuous_at_half_and_matches_quadrature():
    w = DoubleWell(barrier=1.0, curvature=1.0)
    k = mean_escape_time_approx(w, hurst=0.5, sigma=0.7).mean
    for h in (0.5 - 1e-7, 0.5 + 1e-7):
        a = mean_escape_time_approx(w, hurst=h, sigma=0.7)
        assert a.conditional_mean == pytest.approx(k, rel=1e-4)
    # H = 0.7: an independent nested quad of E[T] = int exp(-int_0^t r) dt
    h, sigma = 0.7, 0.7
    nu = 1 / (2 * math.pi)

    def rate(t):
        return nu * math.exp(-1.0 / (h * sigma**2 * t ** (2 * h - 1)))

    def hazard(t):
        return scipy.integrate.quad(rate, 0, t, limit=200)[0]

    a = mean_escape_time_approx(w, hurst=h, sigma=sigma)
    ref = scipy.integrate.quad(lambda t: math.exp(-hazard(t)), 0, 40 * a.mean, limit=200)[0]
    assert a.mean == pytest.approx(ref, rel=1e-6)
    assert a.survival(0.0) == 1.0
    assert a.survival(a.mean) == pytest.approx(math.exp(-hazard(a.mean)), rel=1e-6)
    r = mean_escape_time_approx(w, hurst=h, sigma=sigma, horizon=a.mean)
    ref_r = scipy.integrate.quad(lambda t: math.exp(-hazard(t)), 0, a.mean, limit=200)[0]
    assert r.restricted_mean == pytest.approx(ref_r, rel=1e-6)


def test_time_dependent_approximation_below_half_never_escapes_with_positive_probability():
    w = DoubleWell(barrier=1.0, curvature=1.0)
    for h in (0.2, 0.4):
        a = mean_escape_time_approx(w, hurst=h, sigma=1.2)
        assert a.mean == math.inf
        nu = np.array([1 / (2 * math.pi)])
        total = _td_total_hazard(nu, np.array([1.0]), h, 1.2)
        assert a.escape_probability == pytest.approx(-math.expm1(-total), rel=1e-8)
        assert 0 < a.escape_probability < 1
        assert a.survival(1e12) == pytest.approx(math.exp(-total), rel=1e-8)
        assert np.isfinite(a.conditional_mean) and a.conditional_mean > 0


def test_quasi_stationary_approximation_formula():
    w = DoubleWell(barrier=1.0, curvature=2.0, saddle_curvature=0.5)
    h, sigma, dt = 0.3, 0.9, 0.05
    d_eff = sigma**2 * math.gamma(2 * h + 1) * 2.0 ** (1 - 2 * h) / 2
    expected = 2 * math.pi / math.sqrt(2.0 * 0.5) * math.exp(1.0 / d_eff)
    a = mean_escape_time_approx(w, hurst=h, sigma=sigma, method="quasi-stationary")
    assert a.mean == pytest.approx(expected, rel=1e-13)
    sig = sigma * dt ** (0.5 - h)
    b = mean_escape_time_approx(
        w, hurst=h, sigma=sigma, method="quasi-stationary", scaling="per-step", dt=dt
    )
    assert b.sigma_fbm == pytest.approx(sig)
    assert b.mean == pytest.approx(
        mean_escape_time_approx(w, hurst=h, sigma=sig, method="quasi-stationary").mean, rel=1e-13
    )


def test_approximation_errors():
    with pytest.raises(SgnMemoryError, match="either a potential"):
        mean_escape_time_approx(DoubleWell(), hurst=0.5, sigma=1.0, barrier=1.0)
    with pytest.raises(SgnMemoryError, match="all of barrier"):
        mean_escape_time_approx(hurst=0.5, sigma=1.0, barrier=1.0)
    with pytest.raises(SgnMemoryError, match="no barrier"):
        mean_escape_time_approx(QuadraticWell(), hurst=0.5, sigma=1.0)
    with pytest.raises(SgnMemoryError, match="needs the step dt"):
        mean_escape_time_approx(DoubleWell(), hurst=0.5, sigma=1.0, scaling="per-step")
    with pytest.raises(SgnMemoryError, match="method must be one of"):
        mean_escape_time_approx(DoubleWell(), hurst=0.5, sigma=1.0, method="kramers")
    with pytest.raises(SgnMemoryError, match="strictly between"):
        mean_escape_time_approx(DoubleWell(), hurst=1.5, sigma=1.0)


# ------------------------------------------------------------------ exact H = 1/2 exit times


def test_brownian_mean_exit_time_closed_forms():
    flat = CustomPotential(lambda x: np.zeros_like(x), value=lambda x: np.zeros_like(x))
    # free Brownian motion in (a, b): (x - a)(b - x) / sigma^2
    t = brownian_mean_exit_time(flat, 0.3, Interval(0.0, 1.0), sigma=1.0)
    assert t == pytest.approx(0.3 * 0.7, rel=1e-9)
    # constant drift c to the right, reflecting far left: (b - x) / c
    slope = CustomPotential(lambda x: -0.5 + 0 * x, value=lambda x: -0.5 * x + 0.005 * x**2)
    # (the small quadratic only confines the far left; its drift near x in [0, 2] is < 2%)
    t = brownian_mean_exit_time(slope, 0.0, Interval(high=2.0), sigma=0.3)
    assert t == pytest.approx(2.0 / 0.5, rel=0.03)
    # Kramers is the high-barrier limit: within 2% at barrier / D = 8 here
    w = DoubleWell(barrier=1.0, curvature=1.0)
    exact = brownian_mean_exit_time(w, w.minima[0], w.escape_domain(0), sigma=0.5)
    kramers = mean_escape_time_approx(w, hurst=0.5, sigma=0.5).mean
    assert 1.0 < exact / kramers < 1.02


# ------------------------------------------------------------------ Monte Carlo vs theory


def test_monte_carlo_matches_kramers_and_the_exact_mean_at_half():
    # piecewise-parabolic symmetric well, barrier / D = 4; Kramers is 3.6% below the exact mean
    # here.  Euler at k dt = 0.02 inflates the well's variance by 1% -> escape ~4% faster.
    w = DoubleWell(barrier=1.0, curvature=1.0)
    sigma = math.sqrt(2 / 4)
    sim = simulate_sde(
        w,
        w.minima[0],
        hurst=0.5,
        sigma=sigma,
        dt=0.02,
        n_steps=110_000,
        size=800,
        domain=w.escape_domain(0),
        keep="final",
        lanes=80,
        rng=2024,
    )
    esc = escape_times(sim, n_bootstrap=199)
    kramers = mean_escape_time_approx(w, hurst=0.5, sigma=sigma).mean
    exact = brownian_mean_exit_time(w, w.minima[0], w.escape_domain(0), sigma=sigma)
    assert esc.censored_fraction < 0.01
    assert abs(esc.mean / kramers - 1) < 0.15  # the issue's criterion
    assert abs(esc.mean - exact) < 4 * esc.mean_stderr + 0.05 * exact  # MC error + Euler bias
    # high barrier: escape is memoryless
    assert esc.exponential.pvalue > 0.01


@pytest.mark.slow
def test_escape_is_near_exponential_for_high_barriers_and_not_for_low_ones():
    # fractional noise too (H = 0.7): rare escapes of a mixing stationary process are Poisson
    w = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
    kw = dict(dt=0.01, size=600, domain=w.escape_domain(0), keep="final", rng=9)
    high = simulate_sde(w, -1.0, hurst=0.7, sigma=0.75, n_steps=60_000, **kw)
    e = escape_times(high)
    assert e.censored_fraction < 0.05 and e.exponential.n_events > 500
    assert e.exponential.pvalue > 0.01
    # low barrier (barrier / D ~ 0.5): the escape time is mostly the deterministic descent
    low = simulate_sde(w, -1.0, hurst=0.7, sigma=2.0, n_steps=5_000, **kw)
    e = escape_times(low)
    assert e.censored_fraction == 0
    assert e.exponential.pvalue < 0.01


# ------------------------------------------------------------------ study


def test_escape_study_table():
    study = escape_study(
        [0.4, 0.5],
        0.9,
        1.0,
        [1.0, 2.0],
        dt=0.02,
        n_paths=60,
        max_steps=3000,
        n_bootstrap=0,
        rng=0,
    )
    assert len(study) == 8
    cols = study.columns()
    assert set(cols) == set(study.column_names())
    assert all(v.shape == (8,) for v in cols.values())
    assert sorted(set(study.scaling.tolist())) == ["fbm", "per-step"]
    half = study.hurst == 0.5
    np.testing.assert_allclose(study.approx_quasi_stationary[half], study.kramers[half])
    np.testing.assert_allclose(study.approx_time_dependent[half], study.kramers[half])
    ps = study.scaling == "per-step"
    np.testing.assert_allclose(study.sigma_fbm[ps], 0.9 * 0.02 ** (0.5 - study.hurst[ps]))
    np.testing.assert_allclose(
        study.ratio_quasi_stationary, study.mc_mean_exp / study.approx_quasi_stationary
    )
    assert np.all(study.approx_time_dependent[study.hurst < 0.5] == np.inf)
    rec = study.to_records()
    assert len(rec) == 8 and rec[0]["scaling"] == "fbm" and isinstance(rec[0]["hurst"], float)
    md = study.to_markdown()
    assert md.count("\n") == 9 and "mc_mean_exp" in md.splitlines()[0]
    eff = study.h_effect()
    assert len(eff["slope_mc_below_half"]) == 4  # (scaling, curvature) groups
    assert set(eff["direction_below_half"]) <= {"longer with H", "shorter with H", "n/a"}
    # below 1/2 the time-dependent approximation is infinite: no slope
    assert np.all(np.isfinite(eff["slope_quasi_stationary_below_half"]))
    assert np.all(eff["direction_above_half"] == "n/a")  # only H = 0.5 above
    with pytest.raises(SgnMemoryError, match="unknown column"):
        study.to_markdown(["nope"])
    with pytest.raises(SgnMemoryError, match="strictly between"):
        escape_study(1.2, 1.0, 1.0, 1.0)


def test_brownian_mean_exit_time_is_exact_where_wells_differ_in_depth():
    """Mirror images must agree (they take different boundary branches), and a triple well
    matches an independent finite-difference solve of D T'' - U' T' = -1 (the cumulative-
    integral form lost every digit here: it returned a negative time at D = 0.04)."""
    import math

    import scipy.linalg

    for d in (0.2, 0.07, 0.05):
        s = math.sqrt(2 * d)
        right = DoubleWell(barrier=3.0, barrier_right=0.5)
        left = DoubleWell(barrier=0.5, barrier_right=3.0)
        t_right = brownian_mean_exit_time(right, right.minima[1], right.escape_domain(1), sigma=s)
        t_left = brownian_mean_exit_time(left, left.minima[0], left.escape_domain(0), sigma=s)
        assert t_right == pytest.approx(t_left, rel=1e-9)

    def grad(x):
        return x**5 - 5 * x**3 + 4 * x

    def value(x):
        return x**6 / 6 - 5 * x**4 / 4 + 2 * x**2

    triple = CustomPotential(grad, value=value, minima=[-2, 0, 2], saddles=[-1, 1])
    d = 0.05  # the old form was 1.4% low here (and negative at 0.04)
    ours = brownian_mean_exit_time(triple, 0.0, Interval(-2.0, 2.0), sigma=math.sqrt(2 * d))

    def finite_differences(n):
        x = np.linspace(-2.0, 2.0, n)
        h = x[1] - x[0]
        drift = -grad(x[1:-1])
        bands = np.zeros((3, n - 2))  # central differences, T = 0 at both ends
        bands[0, 1:] = (d / h**2 + drift / (2 * h))[:-1]
        bands[1, :] = -2 * d / h**2
        bands[2, :-1] = (d / h**2 - drift / (2 * h))[1:]
        return scipy.linalg.solve_banded((1, 1), bands, -np.ones(n - 2))[(n - 2) // 2]

    # O(h^2) scheme: Richardson extrapolation of two grids (finer grids lose digits to
    # conditioning at T ~ 1e8); measured agreement 1e-5
    coarse, fine = finite_differences(8001), finite_differences(16001)
    assert ours == pytest.approx(fine - (coarse - fine) / 3, rel=1e-4)


def test_time_dependent_escape_probability_near_half():
    """H just below 1/2 at a high barrier: the total hazard (closed form) is huge, so every
    path escapes; further below 1/2 it is tiny, and so is the escape probability (the old
    stopping rule reported 0 at H = 0.498)."""
    import math

    from sgn_memory.passage._approx import _td_total_hazard

    well = DoubleWell(barrier=1.0, curvature=1.0)
    sigma = math.sqrt(2 / 65)
    for h in (0.498, 0.49):
        total = _td_total_hazard(np.array([1 / (2 * math.pi)]), np.array([1.0]), h, sigma)
        got = mean_escape_time_approx(well, hurst=h, sigma=sigma).escape_probability
        assert got == pytest.approx(-math.expm1(-total), rel=1e-6)
