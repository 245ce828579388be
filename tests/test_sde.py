"""fBM-driven SDE simulation: exact stationary laws, noise scalings, Euler steps, potentials,
exit recording, memory, reproducibility, errors."""

import importlib
import math
import tracemalloc

import numpy as np
import pytest

import sgn_memory as sgn
from sgn_memory.errors import SgnMemoryError
from sgn_memory.sde import (
    Ball,
    CustomPotential,
    DoubleWell,
    Interval,
    QuadraticWell,
    QuarticDoubleWell,
    fbm_equivalent_sigma,
    simulate_sde,
)

sde_module = importlib.import_module("sgn_memory.sde._simulate")


def fou_variance(hurst, curvature, sigma):
    """Stationary variance of dX = -k X dt + sigma dB^H (Cheridito, Kawaguchi & Maejima 2003)."""
    return sigma**2 * math.gamma(2 * hurst + 1) / (2 * curvature ** (2 * hurst))


def euler_fou_variance(hurst, curvature, sigma, dt, n_terms=20000):
    """Exact stationary variance of the Euler chain x' = (1 - k dt) x + sigma dt^H xi, xi fGn.

    x = sum_i a^i e_{-i}, so Var = s^2 sum_{i,j} a^{i+j} gamma(i - j)
    = s^2 (gamma(0) + 2 sum_{k>=1} gamma(k) a^k) / (1 - a^2).
    """
    a = 1 - curvature * dt
    k = np.arange(1, n_terms)
    gamma = sgn.fgn_autocovariance(hurst, k)
    s2 = (sigma * dt**hurst) ** 2
    return s2 * (1 + 2 * np.sum(gamma * a**k)) / (1 - a * a)


# ------------------------------------------------------------------ exact stationary laws


@pytest.mark.parametrize("hurst", [0.3, 0.5, 0.7])
def test_fou_stationary_variance(hurst):
    k, sigma, dt = 1.0, 1.0, 0.02
    burn, n_keep, thin = 1000, 5000, 5  # burn-in: 20 relaxation times
    sim = simulate_sde(
        QuadraticWell(curvature=k),
        0.0,
        hurst=hurst,
        sigma=sigma,
        dt=dt,
        n_steps=burn + n_keep,
        size=1500,
        keep="path",
        thin=thin,
        rng=100 + int(10 * hurst),
    )
    x = sim.paths[:, burn // thin + 1 :]
    per_path = (x * x).mean(axis=1)  # time average per path; paths are independent
    var = per_path.mean()
    se = per_path.std(ddof=1) / math.sqrt(per_path.size)
    theory = fou_variance(hurst, k, sigma)
    lattice = euler_fou_variance(hurst, k, sigma, dt)
    # the criterion
    assert abs(var / theory - 1) < 0.05
    # and the sharper one: the scheme's own stationary variance, within Monte-Carlo error
    assert abs(var - lattice) < 4 * se
    # the documented discretisation bias of the scheme at k dt = 0.02 (0.6-1.4 %)
    assert 0.004 < lattice / theory - 1 < 0.015


def test_fou_two_dimensional_covariance_with_diffusion_matrix():
    k, sigma, dt, hurst = 1.0, 0.8, 0.02, 0.6
    mix = np.array([[1.0, 0.0], [0.6, 0.8]])
    sim = simulate_sde(
        QuadraticWell(curvature=k, center=[0.0, 0.0]),
        [0.0, 0.0],
        hurst=hurst,
        sigma=sigma,
        dt=dt,
        n_steps=2000,
        size=4000,
        diffusion=mix,
        keep="final",
        rng=5,
    )
    cov = np.cov(sim.final.T)
    target = mix @ mix.T * euler_fou_variance(hurst, k, sigma, dt)
    # entrywise: Var(x_i x_j) <= sqrt(target_ii target_jj) * sqrt(2): se ~ that / sqrt(n)
    scale = np.sqrt(np.outer(np.diag(target), np.diag(target)))
    assert np.all(np.abs(cov - target) < 4 * math.sqrt(2 / 4000) * scale)


# ------------------------------------------------------------------ noise scalings


@pytest.mark.parametrize("hurst", [0.3, 0.8])
@pytest.mark.parametrize("scaling", ["fbm", "per-step"])
def test_increments_have_the_stated_std_and_fgn_correlation(hurst, scaling):
    sigma, dt, n_paths = 1.3, 0.1, 20000
    sim = simulate_sde(
        lambda x: np.zeros_like(x),
        0.0,
        hurst=hurst,
        sigma=sigma,
        dt=dt,
        n_steps=32,
        size=n_paths,
        scaling=scaling,
        rng=7,
    )
    inc = np.diff(sim.paths, axis=1)
    target = sigma * dt**hurst if scaling == "fbm" else sigma * math.sqrt(dt)
    assert sim.noise_std == pytest.approx(target, rel=1e-14)
    assert sim.scaling == scaling
    per_path = (inc * inc).mean(axis=1) / target**2
    se = per_path.std(ddof=1) / math.sqrt(n_paths)
    assert abs(per_path.mean() - 1) < 4 * se
    # only the correlation depends on H, identically under both scalings
    lag1 = (inc[:, 1:] * inc[:, :-1]).mean(axis=1) / target**2
    se1 = lag1.std(ddof=1) / math.sqrt(n_paths)
    assert abs(lag1.mean() - (2 ** (2 * hurst - 1) - 1)) < 4 * se1


def test_per_step_scaling_is_fbm_scaling_with_equivalent_sigma():
    kw = dict(hurst=0.7, dt=0.05, n_steps=50, size=10, rng=3)
    a = simulate_sde(QuadraticWell(), 0.2, sigma=1.0, scaling="per-step", **kw)
    sig = fbm_equivalent_sigma(1.0, 0.7, 0.05, "per-step")
    assert sig == pytest.approx(0.05 ** (0.5 - 0.7))
    b = simulate_sde(QuadraticWell(), 0.2, sigma=sig, scaling="fbm", **kw)
    np.testing.assert_allclose(a.paths, b.paths, rtol=1e-12, atol=1e-15)
    assert a.sigma_fbm == pytest.approx(sig)
    # at H = 1/2 the two scalings are the same scheme
    c = simulate_sde(QuadraticWell(), 0.2, hurst=0.5, sigma=1.0, dt=0.05, n_steps=50, rng=1)
    d = simulate_sde(
        QuadraticWell(), 0.2, hurst=0.5, sigma=1.0, dt=0.05, n_steps=50, rng=1, scaling="per-step"
    )
    np.testing.assert_array_equal(c.paths, d.paths)


# ------------------------------------------------------------------ Euler steps by hand


def test_euler_steps_by_hand_one_dimensional():
    k, c, x0, dt, sigma, h = 2.0, 0.5, 0.3, 0.1, 0.7, 0.3
    xi = np.array([[0.5, -1.0, 2.0]])
    s = sigma * dt**h
    x1 = 0.3 - 0.1 * 2.0 * (0.3 - 0.5) + s * 0.5
    x2 = x1 - 0.1 * 2.0 * (x1 - 0.5) - s
    x3 = x2 - 0.1 * 2.0 * (x2 - 0.5) + 2 * s
    kw = dict(hurst=h, sigma=sigma, dt=dt, n_steps=3, size=1, noise=xi)
    for grad in (QuadraticWell(curvature=k, center=c), lambda x: k * (x - c)):
        sim = simulate_sde(grad, x0, **kw)
        np.testing.assert_allclose(sim.paths[0], [x0, x1, x2, x3], rtol=1e-14)
        assert sim.final[0] == pytest.approx(x3, rel=1e-14)
    # per-step scaling: s = sigma sqrt(dt)
    sim = simulate_sde(QuadraticWell(k, c), x0, scaling="per-step", **kw)
    s = sigma * math.sqrt(dt)
    assert sim.paths[0, 1] == pytest.approx(0.3 + 0.04 + s * 0.5, rel=1e-14)


def test_euler_steps_by_hand_two_dimensional_with_diffusion():
    mix = np.array([[1.0, 0.0], [0.5, 2.0]])
    xi = np.array([[[0.3, -0.2], [1.0, 0.4]]])  # (size=1, n_steps=2, m=2)
    dt, sigma, h, k = 0.2, 0.5, 0.6, 3.0
    s = sigma * dt**h
    x0 = np.array([1.0, -1.0])
    x1 = x0 - dt * k * x0 + s * mix @ xi[0, 0]
    x2 = x1 - dt * k * x1 + s * mix @ xi[0, 1]
    sim = simulate_sde(
        QuadraticWell(k, center=[0.0, 0.0]),
        x0,
        hurst=h,
        sigma=sigma,
        dt=dt,
        n_steps=2,
        size=1,
        diffusion=mix,
        noise=xi,
    )
    np.testing.assert_allclose(sim.paths[0], [x0, x1, x2], rtol=1e-14)


# ------------------------------------------------------------------ potentials


def test_double_well_landmarks_are_what_was_asked():
    w = DoubleWell(
        barrier=1.5,
        curvature=0.5,
        saddle_curvature=2.0,
        barrier_right=0.7,
        curvature_right=3.0,
        saddle=0.4,
    )
    left, right = w.well(0), w.well(1)
    assert left.barrier == pytest.approx(1.5) and right.barrier == pytest.approx(0.7)
    assert left.curvature == 0.5 and right.curvature == 3.0
    assert left.saddle_curvatures == (-2.0,) and left.saddles == (0.4,)
    assert w.value(0.4) == pytest.approx(0.0)
    assert left.basin == (-math.inf, 0.4) and right.neighbours == (left.minimum, math.inf)
    # the gradient is the derivative of the value, and continuous across the joins
    x = np.linspace(-6, 6, 2001)
    h = 1e-6
    np.testing.assert_allclose(
        w.gradient(x), (w.value(x + h) - w.value(x - h)) / (2 * h), atol=1e-6
    )
    assert np.all(np.abs(w.gradient(w._joins + 1e-12) - w.gradient(w._joins - 1e-12)) < 1e-9)
    assert np.all(np.abs(w.gradient(w.minima)) < 1e-12)
    # flat/sharp pair: equal depth, different curvature
    fs = DoubleWell.flat_sharp(depth=2.0, flat=0.25, sharp=4.0)
    assert fs.well(0).barrier == pytest.approx(fs.well(1).barrier) == pytest.approx(2.0)
    assert (fs.well(0).curvature, fs.well(1).curvature) == (0.25, 4.0)


def test_quartic_double_well_formulas():
    w = QuarticDoubleWell.symmetric(barrier=2.0, curvature=5.0)
    assert w.well(0).barrier == pytest.approx(2.0) and w.well(1).curvature == pytest.approx(5.0)
    assert w.well(0).saddle_curvatures[0] == pytest.approx(-2.5)
    a, b, c = 1.0, 2.0, 0.7
    q = QuarticDoubleWell(left=-a, saddle=0.0, right=b, scale=c)
    assert q.well(0).barrier == pytest.approx(c * a**3 * (a + 2 * b) / 12)
    assert q.well(1).barrier == pytest.approx(c * b**3 * (b + 2 * a) / 12)
    assert q.well(0).curvature == pytest.approx(c * a * (a + b))
    x = np.linspace(-2, 3, 101)
    np.testing.assert_allclose(
        q.gradient(x), (q.value(x + 1e-6) - q.value(x - 1e-6)) / 2e-6, rtol=1e-6, atol=1e-8
    )


def test_custom_potential_landmarks_from_callables():
    cp = CustomPotential(lambda x: 4 * x**3 - 4 * x, minima=[-1, 1], saddles=[0])
    w = cp.well(0)
    assert w.barrier == pytest.approx(1.0, rel=1e-9)  # integrated from the gradient
    assert w.curvature == pytest.approx(8.0, rel=1e-6)
    assert w.saddle_curvatures[0] == pytest.approx(-4.0, rel=1e-6)
    with pytest.raises(SgnMemoryError, match="positive at every minimum"):
        CustomPotential(lambda x: 4 * x**3 - 4 * x, minima=[0], saddles=[])
    with pytest.raises(SgnMemoryError, match="alternate"):
        CustomPotential(lambda x: x, minima=[0, 1], saddles=[2])


# ------------------------------------------------------------------ exits, kept paths, memory


def test_exit_recording_matches_kept_paths_and_stops_them():
    w = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
    dom = w.escape_domain(0)
    kw = dict(hurst=0.7, sigma=1.0, dt=0.01, n_steps=3000, size=300, domain=dom, rng=3)
    final = simulate_sde(w, -1.0, keep="final", **kw)
    full = simulate_sde(w, -1.0, keep="path", **kw)
    thinned = simulate_sde(w, -1.0, keep="path", thin=7, **kw)
    assert final.paths is None
    ex = final.exit_step
    assert 0.3 < (ex > 0).mean() < 1  # some exit, some are censored
    np.testing.assert_array_equal(ex, full.exit_step)
    np.testing.assert_array_equal(ex, thinned.exit_step)
    np.testing.assert_array_equal(final.final, full.final)
    np.testing.assert_array_equal(full.paths[:, ::7], thinned.paths)
    np.testing.assert_array_equal(thinned.times, np.arange(3000 // 7 + 1) * 0.07)
    inside = (full.paths > dom.low) & (full.paths < dom.high)
    for i in np.flatnonzero(ex > 0)[:50]:
        e = ex[i]
        assert inside[i, :e].all() and not inside[i, e]
        assert full.paths[i, e] == final.exit_position[i]
        assert np.all(full.paths[i, e:] == full.paths[i, e])  # stopped process
    cens = ex < 0
    assert inside[cens].all() and np.isnan(final.exit_position[cens]).all()
    np.testing.assert_array_equal(final.final[cens], full.paths[cens, -1])
    assert np.all(final.exit_time[cens] == np.inf)


def test_ball_and_callable_domains():
    kw = dict(hurst=0.5, sigma=1.0, dt=0.01, n_steps=2000, size=2000, keep="final", rng=2)
    free = lambda x: np.zeros_like(x)  # noqa: E731
    a = simulate_sde(free, [0.0, 0.0], domain=Ball([0.0, 0.0], 1.0), **kw)
    b = simulate_sde(
        free, [0.0, 0.0], domain=lambda x: np.einsum("...i,...i->...", x, x) < 1.0, **kw
    )
    np.testing.assert_array_equal(a.exit_step, b.exit_step)
    hit = a.exit_step > 0
    assert hit.mean() > 0.99
    assert np.all(np.linalg.norm(a.exit_position[hit], axis=1) >= 1.0)
    # Brownian motion in 2-D leaves the disc of radius r after E[T] = r^2 / (2 sigma^2); checked
    # on the grid only, the boundary is effectively at r + 0.5826 sigma sqrt(dt) (Broadie,
    # Glasserman & Kou 1997): 0.5600 here, against 0.5 in continuous time
    t = a.exit_time[hit]
    assert abs(t.mean() - (1 + 0.5826 * math.sqrt(0.01)) ** 2 / 2) < 4 * t.std() / math.sqrt(t.size)


def test_memory_stays_bounded_when_only_exits_are_kept():
    n_paths, n_steps = 1000, 40000
    full_bytes = n_paths * (n_steps + 1) * 8

    def run():
        return simulate_sde(
            lambda x: np.zeros_like(x),
            0.0,
            hurst=0.7,
            sigma=1.0,
            dt=0.01,
            n_steps=n_steps,
            size=n_paths,
            domain=Interval(-0.5, 0.5),
            keep="final",
            lanes=16,
            rng=0,
        )

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        sim = run()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert sim.paths is None and (sim.exit_step > 0).all()
    # per thread: 16 lanes of noise (5 MB) plus the fGn scratch of one draw of 16 paths
    assert peak < 0.25 * full_bytes, peak / 2**20


def test_reproducible_and_independent_of_threads(monkeypatch):
    w = DoubleWell(barrier=0.5, curvature=1.0)
    kw = dict(hurst=0.6, sigma=0.8, dt=0.02, n_steps=500, size=300, block_paths=64, lanes=16)
    dom = w.escape_domain(0)
    a = simulate_sde(w, w.minima[0], domain=dom, keep="final", rng=11, **kw)
    b = simulate_sde(w, w.minima[0], domain=dom, keep="final", rng=np.random.default_rng(11), **kw)
    monkeypatch.setattr(sde_module, "_THREADS", 1)
    c = simulate_sde(w, w.minima[0], domain=dom, keep="final", rng=11, **kw)
    d = simulate_sde(w, w.minima[0], domain=dom, keep="final", rng=12, **kw)
    for other in (b, c):
        np.testing.assert_array_equal(a.exit_step, other.exit_step)
        np.testing.assert_array_equal(a.final, other.final)
    assert not np.array_equal(a.final, d.final)
    assert a.settings["block_paths"] == 64 and a.settings["lanes"] == 16


def test_shapes_and_repr():
    sim = simulate_sde(QuadraticWell(), 0.0, hurst=0.4, sigma=1.0, dt=0.1, n_steps=10, rng=0)
    assert sim.paths.shape == (11,) and sim.final.shape == () and sim.n_paths == 1
    sim = simulate_sde(
        QuadraticWell(center=[0, 0, 0]),
        [0, 0, 0],
        hurst=0.4,
        sigma=1.0,
        dt=0.1,
        n_steps=10,
        size=(2, 3),
        rng=0,
    )
    assert sim.paths.shape == (2, 3, 11, 3) and sim.final.shape == (2, 3, 3)
    assert sim.exit_step is None and sim.exit_time is None
    text = repr(sim)
    assert "scaling='fbm'" in text and "shape=(2, 3, 11, 3)" in text


# ------------------------------------------------------------------ errors


def _sim(**over):
    kw = dict(grad=QuadraticWell(), x0=0.0, hurst=0.5, sigma=1.0, dt=0.1, n_steps=10, size=3, rng=0)
    kw.update(over)
    return simulate_sde(kw.pop("grad"), kw.pop("x0"), **kw)


@pytest.mark.parametrize(
    "over, match",
    [
        (dict(hurst=0.0), "strictly between 0 and 1"),
        (dict(hurst=1.0), "strictly between 0 and 1"),
        (dict(hurst=float("nan")), "strictly between 0 and 1"),
        (dict(sigma=0.0), "sigma must be a positive finite number"),
        (dict(sigma=-1.0), "sigma must be a positive finite number"),
        (dict(sigma=float("inf")), "sigma must be a positive finite number"),
        (dict(dt=0.0), "dt must be a positive finite number"),
        (dict(n_steps=0), "n_steps must be a positive integer"),
        (dict(n_steps=2.5), "n_steps must be a positive integer"),
        (dict(x0=float("nan")), "x0 must be finite"),
        (dict(x0=[[0.0]]), "x0 must be a scalar"),
        (dict(x0=[0.0, 0.0]), "potential has states of shape"),
        (dict(scaling="fractional"), "scaling must be one of"),
        (dict(keep="all"), "keep must be one of"),
        (dict(thin=0), "thin must be a positive integer"),
        (dict(size=-1), "non-negative integers"),
        (dict(diffusion=[[1.0]]), "diffusion must be a"),
        (dict(noise=np.zeros((3, 9))), "noise must have shape"),
        (dict(domain=Interval(1.0, 2.0)), "lies outside the domain"),
        (dict(grad="U"), "grad must be a Potential or a callable"),
        (dict(grad=lambda x: x[:1]), "same shape|shape of x"),
        (dict(dt=5.0, n_steps=1000), "left the finite numbers"),
        (dict(n_steps=10**6, size=10**3), "would take"),
    ],
)
def test_clear_errors(over, match):
    with pytest.raises(SgnMemoryError, match=match):
        _sim(**over)


def test_domain_errors():
    with pytest.raises(SgnMemoryError, match="low < high"):
        Interval(1.0, 0.0)
    with pytest.raises(SgnMemoryError, match="at least one finite bound"):
        Interval()
    with pytest.raises(SgnMemoryError, match="coordinate"):
        _sim(grad=QuadraticWell(center=[0, 0]), x0=[0.0, 0.0], domain=Interval(-1, 1))
    with pytest.raises(SgnMemoryError, match="no barrier"):
        QuadraticWell().escape_domain(0)
    with pytest.raises(SgnMemoryError, match="well index"):
        DoubleWell().well(2)
