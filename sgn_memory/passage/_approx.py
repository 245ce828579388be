"""Closed-form approximations of the mean escape time, and the exact H = 1/2 mean."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.special

from ..errors import SgnMemoryError
from ..sde import (
    Interval,
    Potential,
    Scaling,
    Target,
    fbm_equivalent_sigma,
)
from ..sde._common import _hurst, _positive, _positive_int, _scaling

Method = Literal["time-dependent", "quasi-stationary"]
_METHODS = ("time-dependent", "quasi-stationary")
# Log-time grid of the time-dependent approximation (points per decade).
_TD_POINTS_PER_DECADE = 200
# The approximation's survival is integrated until its cumulative hazard reaches this.
_TD_MAX_HAZARD = 50.0


def _outer_point(u: Callable, start: float, direction: float, scale: float, u_ref: float, d: float):
    """A point beyond ``start`` where exp(-(U - u_ref) / D) < e^-60 (the density has vanished)."""
    step = scale
    x = start
    for _ in range(200):
        x = start + direction * step
        if (float(u(np.asarray(x))) - u_ref) / d > 60:
            return x
        step *= 1.5
    raise SgnMemoryError("the potential does not confine the paths on that side (U does not grow).")


def brownian_mean_exit_time(
    potential: Potential, x0: float, domain: Interval, *, sigma: float, n_grid: int = 200_001
) -> float:
    """Exact mean exit time of dX = -U'(X) dt + sigma dW (H = 1/2) from an interval, by quadrature.

    With D = sigma^2 / 2, scale density psi = exp(U / D), S(x) = int_a^x psi,
    Sbar(x) = int_x^b psi and m = exp(-U / D), the Green's-function form (absorbing at both
    ends) T(x) = [Sbar(x) int_a^x S m + S(x) int_x^b Sbar m] / (D S(b)); an infinite end is a
    natural boundary, replaced by a point beyond which the stationary density is below e^-60 of
    its peak (T = [Sbar(x) int_-inf^x m + int_x^b Sbar m] / D without a lower end, and
    symmetrically).  Every term is positive, so it stays accurate when another well inside the
    domain is much deeper than the starting one; ``inf`` beyond 1e308.

    This is the continuous-time answer: the Euler scheme and its grid-time exit checks differ
    from it by O(dt) and by the grid-monitoring shift of about one step's noise (see
    :func:`sgn_memory.simulate_sde`).

    Parameters
    ----------
    potential : Potential
        A 1-D potential (``value`` is used).
    x0 : float
        Start, inside ``domain``.
    domain : Interval
    sigma : float
    n_grid : int
        Quadrature points (Simpson); the default gives ~1e-8 relative accuracy for smooth U.

    Examples
    --------
    >>> from sgn_memory.passage import brownian_mean_exit_time
    >>> from sgn_memory.sde import DoubleWell
    >>> w = DoubleWell(barrier=1.0, curvature=1.0)
    >>> round(brownian_mean_exit_time(w, w.minima[0], w.escape_domain(0), sigma=0.5), 1)
    18773.5
    """
    import scipy.integrate

    sigma = _positive("sigma", sigma)
    if not isinstance(potential, Potential) or potential.state_shape != ():
        raise SgnMemoryError("brownian_mean_exit_time needs a one-dimensional Potential.")
    if not isinstance(domain, Interval):
        raise SgnMemoryError("brownian_mean_exit_time needs an Interval domain.")
    n_grid = _positive_int("n_grid", n_grid)
    x0 = float(x0)
    a, b = domain.low, domain.high
    if not a < x0 < b:
        raise SgnMemoryError(f"x0 = {x0} must lie inside ({a}, {b}).")
    d = sigma**2 / 2
    u = potential.value
    u0 = float(u(np.asarray(x0)))
    scale = max(1.0, abs(x0)) * 1e-2 + (b - a if np.isfinite(b - a) else 1.0) * 1e-2
    lo = a if np.isfinite(a) else _outer_point(u, min(x0, b), -1.0, scale, u0, d)
    hi = b if np.isfinite(b) else _outer_point(u, max(x0, a), 1.0, scale, u0, d)
    y = np.linspace(lo, hi, n_grid)
    uy = np.asarray(u(y), dtype=float) / d
    # scale density psi = exp(U/D) and speed density m = exp(-U/D), each scaled to peak 1; the
    # Green's-function form below has only positive terms, so no digits are lost when another
    # well of the domain holds far more mass than the one the path starts in
    psi = np.exp(uy - uy.max())
    m = np.exp(-(uy - uy.min()))

    def forward(f):  # int_lo^y f
        return scipy.integrate.cumulative_simpson(f, x=y, initial=0.0)

    def backward(f):  # int_y^hi f
        return scipy.integrate.cumulative_simpson(f[::-1], x=-y[::-1], initial=0.0)[::-1]

    def at(values):
        return float(np.interp(x0, y, values))

    s_fwd, s_bwd = forward(psi), backward(psi)
    if np.isfinite(a) and np.isfinite(b):  # absorbing at both ends
        t = (at(s_bwd) * at(forward(s_fwd * m)) + at(s_fwd) * at(backward(s_bwd * m))) / s_fwd[-1]
    elif np.isfinite(b):  # natural boundary on the left
        t = at(s_bwd) * at(forward(m)) + at(backward(s_bwd * m))
    else:  # natural boundary on the right
        t = at(forward(s_fwd * m)) + at(s_fwd) * at(backward(m))
    log_t = math.log(t) + (uy.max() - uy.min()) - math.log(d) if t > 0 else -math.inf
    return math.exp(log_t) if log_t < 709.0 else math.inf


@dataclass(frozen=True, repr=False)
class EscapeApproximation:
    """A closed-form approximation of the escape-time law for fractional noise.

    Attributes
    ----------
    mean : float
        Approximate E[T]; ``inf`` when the approximation gives a positive probability of never
        escaping (time-dependent method with H < 1/2).
    conditional_mean : float
        E[T | T < inf], the mean over the paths that do escape: equal to ``mean`` except for
        the time-dependent method at H < 1/2, where it is the finite number to compare with a
        Monte Carlo (NaN when the approximation says that practically nothing escapes).
    restricted_mean : float
        Approximate E[min(T, horizon)] (NaN without a horizon).
    horizon : float or None
    escape_probability : float
        1 - S(infinity): 1 except for the time-dependent method at H < 1/2.
    kramers : float
        Kramers' time 2 pi / sqrt(k k_s) exp(2 dU / sigma_fbm^2) (halved for target "saddle";
        several exits add their rates): the H = 1/2 answer at the same noise level.
    method : {"time-dependent", "quasi-stationary"}
    scaling : {"fbm", "per-step"}
    hurst, sigma, sigma_fbm : float
        sigma_fbm is the sigma of the continuous-time SDE (differs from sigma for per-step).
    barriers, saddle_curvatures : tuple of float
        Per exit (saddle); the curvatures as magnitudes.
    curvature : float
    target : {"minimum", "saddle"}
    assumptions : str
    """

    mean: float
    conditional_mean: float
    restricted_mean: float
    horizon: float | None
    escape_probability: float
    kramers: float
    method: str
    scaling: str
    hurst: float
    sigma: float
    sigma_fbm: float
    barriers: tuple[float, ...]
    curvature: float
    saddle_curvatures: tuple[float, ...]
    target: str
    assumptions: str
    _grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _rate: float = field(default=math.nan, repr=False)

    def survival(self, t) -> np.ndarray:
        """The approximation's P(T > t) = exp(-int_0^t r(s) ds)."""
        import scipy.interpolate

        t = np.asarray(t, dtype=float)
        if self._grid is None:
            return np.exp(-self._rate * t)
        log_t, cum, rate_t = self._grid
        with np.errstate(divide="ignore"):
            lt = np.log(np.maximum(t, 0.0))
        # cubic Hermite in log t with the exact slope d(hazard)/d(log t) = r(t) t: ~1e-9
        spline = scipy.interpolate.CubicHermiteSpline(log_t, cum, rate_t, extrapolate=False)
        inside = (lt >= log_t[0]) & (lt <= log_t[-1])
        lam = np.where(inside, spline(np.clip(lt, log_t[0], log_t[-1])), 0.0)
        lam = np.where(lt > log_t[-1], cum[-1], lam)
        lam = np.where(lt < log_t[0], cum[0] * np.exp(lt - log_t[0]), lam)  # ~ linear in t
        return np.exp(-lam)

    def __repr__(self) -> str:
        rm = "" if self.horizon is None else f", restricted_mean={self.restricted_mean:.4g}"
        cm = (
            ""
            if self.conditional_mean == self.mean
            else (f", conditional_mean={self.conditional_mean:.4g}")
        )
        return (
            f"EscapeApproximation(method={self.method!r}, scaling={self.scaling!r}, "
            f"hurst={self.hurst:g}, sigma={self.sigma:g}, mean={self.mean:.4g}{cm}{rm}, "
            f"kramers={self.kramers:.4g}, escape_probability={self.escape_probability:.4g})"
        )


_ASSUMPTIONS = {
    "time-dependent": (
        "Kramers rate with the time-dependent diffusivity of free fBM, "
        "r(t) = sum_s sqrt(k k_s) / (2 pi) exp(-dU_s / D(t)), D(t) = H sigma^2 t^(2H-1), "
        "S(t) = exp(-int_0^t r); the heuristic of the seed paper.  Assumes high barriers "
        "(dU >> D) and that the particle feels the noise as free fBM started at t = 0, i.e. it "
        "ignores the confinement by the well, which makes the stationary fluctuations finite. "
        "For H > 1/2 D(t) grows without bound, so the rate does too; for H < 1/2 it decays to "
        "0 and a finite fraction never escapes (mean = inf).  Depends on the unit of time."
    ),
    "quasi-stationary": (
        "Kramers rate with the effective diffusivity of the stationary fractional OU process in "
        "the harmonic approximation of the well, D_eff = k Var = sigma^2 Gamma(2H+1) "
        "k^(1-2H) / 2, and Kramers' prefactor sqrt(k k_s) / (2 pi); memoryless (exponential) "
        "escape.  Assumes high barriers (dU >> D_eff), a harmonic well up to the barrier, escape "
        "much slower than relaxation, and keeps the Markovian prefactor (no correction for "
        "the noise's memory at the barrier top)."
    ),
}


def _landmarks(potential, well, barrier, curvature, saddle_curvature):
    if potential is not None:
        if any(v is not None for v in (barrier, curvature, saddle_curvature)):
            raise SgnMemoryError(
                "give either a potential or barrier/curvature/saddle_curvature, not both."
            )
        if not isinstance(potential, Potential):
            raise SgnMemoryError(
                f"potential must be a sgn_memory.sde.Potential; got {type(potential).__name__}."
            )
        w = potential.well(well)
        if not w.saddles:
            raise SgnMemoryError("this potential has no barrier to escape over.")
        return (
            np.array(w.barriers, dtype=float),
            float(w.curvature),
            np.abs(np.array(w.saddle_curvatures, dtype=float)),
        )
    if barrier is None or curvature is None or saddle_curvature is None:
        raise SgnMemoryError("give a potential, or all of barrier, curvature and saddle_curvature.")
    b = np.atleast_1d(np.asarray(barrier, dtype=float))
    ks = np.abs(np.atleast_1d(np.asarray(saddle_curvature, dtype=float)))
    if b.shape != ks.shape:
        raise SgnMemoryError("barrier and saddle_curvature need one value per exit (saddle).")
    if not (np.isfinite(b).all() and (b > 0).all() and np.isfinite(ks).all() and (ks > 0).all()):
        raise SgnMemoryError("barriers and saddle curvatures must be positive and finite.")
    return b, _positive("curvature", curvature), ks


def _td_rate(nu, dU, hurst, sf, t) -> np.ndarray:
    """r(t) = sum_s nu_s exp(-dU_s / D(t)), D(t) = H sf^2 t^(2H-1), for an array of times."""
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore", under="ignore"):
        inv_d = t ** (1 - 2 * hurst) / (hurst * sf * sf)
        return (
            (nu[:, None] * np.exp(-dU[:, None] * inv_d.ravel()[None, :]))
            .sum(axis=0)
            .reshape(t.shape)
        )


def _td_total_hazard(nu, dU, hurst, sf) -> float:
    """int_0^inf r for H < 1/2: int_0^inf exp(-c s^q) ds = Gamma(1 + 1/q) c^(-1/q), q = 1 - 2H.

    Used in the tests to check the quadrature; inf when it overflows.
    """
    q = 1 - 2 * hurst
    c = dU / (hurst * sf * sf)
    with np.errstate(over="ignore"):
        return float((nu * np.exp(scipy.special.gammaln(1 + 1 / q) - np.log(c) / q)).sum())


def _td_tail_hazard(nu, dU, hurst, sf, t: float) -> float:
    """int_t^inf r for H < 1/2, exactly: sum nu c^(-1/q) Gamma(1/q, c t^q) / q (upper incomplete
    gamma), q = 1 - 2H, c = dU / (H sf^2)."""
    q = 1 - 2 * hurst
    c = dU / (hurst * sf * sf)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        log_scale = scipy.special.gammaln(1 / q) - np.log(q) - np.log(c) / q
        return float((nu * np.exp(log_scale) * scipy.special.gammaincc(1 / q, c * t**q)).sum())


def _td_end(nu, dU, hurst, sf, t_ref) -> float:
    """A time by which the time-dependent survival is below exp(-50) or has levelled off.

    Doubling from t_ref.  H > 1/2: r increases, so S(t) <= exp(-r(t/2) t/2).  H < 1/2: r
    decreases, so S(t) <= exp(-r(t) t); or the hazard still to come, int_t^inf r (exact, see
    :func:`_td_tail_hazard`), is below e^-60.
    """
    t = t_ref
    while t < 1e300:
        if hurst > 0.5:
            if float(_td_rate(nu, dU, hurst, sf, t / 2)) * t / 2 > _TD_MAX_HAZARD:
                return t
        elif float(_td_rate(nu, dU, hurst, sf, t)) * t > _TD_MAX_HAZARD or _td_tail_hazard(
            nu, dU, hurst, sf, t
        ) < math.exp(-60):
            return t
        t *= 2
    raise SgnMemoryError(  # pragma: no cover - needs exp(dU / D) beyond 1e300
        "the approximate escape time exceeds 1e300 time units."
    )


def _td_grid(nu, dU, hurst, sf, t_lo, t_hi):
    """(log t, hazard, int_0^t S, r(t) t) on a log-time grid from t_lo to t_hi (Simpson)."""
    import scipy.integrate

    decades = max(1.0, math.log10(t_hi / t_lo))
    n = int(decades * _TD_POINTS_PER_DECADE) | 1
    log_t = np.linspace(math.log(t_lo), math.log(t_hi), n)
    t = np.exp(log_t)
    rate = _td_rate(nu, dU, hurst, sf, t)
    # int_0^t_lo r ~ r(t_lo) t_lo: r is about constant (H < 1/2) or negligible (H > 1/2) there
    cum = rate[0] * t_lo + scipy.integrate.cumulative_simpson(rate * t, x=log_t, initial=0.0)
    surv = np.exp(-cum)
    area = t_lo * surv[0] + scipy.integrate.cumulative_simpson(surv * t, x=log_t, initial=0.0)
    return log_t, cum, area, rate * t


def mean_escape_time_approx(
    potential: Potential | None = None,
    *,
    hurst: float,
    sigma: float,
    well: int = 0,
    barrier=None,
    curvature: float | None = None,
    saddle_curvature=None,
    scaling: Scaling = "fbm",
    dt: float | None = None,
    method: Method = "time-dependent",
    target: Target = "minimum",
    horizon: float | None = None,
) -> EscapeApproximation:
    """Closed-form approximation of the mean escape time from a well under fractional noise.

    Parameters
    ----------
    potential : Potential, optional
        A 1-D potential; the landmarks of ``well`` (barrier(s), curvatures) are read from it.
        Or give ``barrier``, ``curvature`` and ``saddle_curvature`` (one value per exit for the
        first and last).
    hurst, sigma : float
        Noise of the SDE.
    scaling : {"fbm", "per-step"}
        As in :func:`sgn_memory.simulate_sde`; "per-step" needs ``dt`` and is treated as the
        "fbm" SDE with sigma_fbm = sigma dt^(1/2 - H).
    method : {"time-dependent", "quasi-stationary"}
        ``"time-dependent"`` (the seed paper's heuristic): Kramers' rate with the diffusivity of
        free fBM, D(t) = H sigma^2 t^(2H-1), integrated over the survival,
        E[T] = int_0^inf exp(-int_0^t r(s) ds) dt (log-time Simpson quadrature, relative error
        < 1e-8).  ``"quasi-stationary"``: Kramers' rate with the effective diffusivity of the
        stationary fractional OU process in the well, D_eff = sigma^2 Gamma(2H+1) k^(1-2H) / 2.
    target : {"minimum", "saddle"}
        Mean time to reach the neighbouring minimum (Kramers' time) or to first touch the
        saddle (half of it: a path on the barrier top falls back half of the time).
    horizon : float, optional
        Also compute E[min(T, horizon)], comparable with a censored Monte-Carlo mean.

    Returns
    -------
    EscapeApproximation

    Notes
    -----
    Both methods reduce *exactly* to Kramers at H = 1/2 (D = sigma^2 / 2):
    tau = 2 pi / sqrt(k |U''(saddle)|) exp(2 dU / sigma^2) for target "minimum" (tested), the
    rates of several exits adding up.  Kramers' formula itself is asymptotic in D / dU: against
    the exact H = 1/2 mean (:func:`brownian_mean_exit_time`) it is 2-4% short for the
    symmetric :class:`~sgn_memory.sde.DoubleWell` at dU / D = 4-5, 10-15% short for the
    quartic well, and for the flat/sharp pair at dU / D = 3 9% (flat) and 25% (sharp) short with
    target "minimum", 16% and 6% with target "saddle".

    Away from H = 1/2 neither method is exact.  Measured against the Monte Carlo
    (``benchmarks/escape_study.py``: basin exit from the flat (U'' = 0.25) and the sharp
    (U'' = 4) well of ``DoubleWell.flat_sharp``, dU / D = 3 at H = 1/2, H = 0.2 ... 0.8, both
    scalings): the quasi-stationary method gets the direction of the H effect right in all
    four cases (escape slower with H in the sharp well and faster in the flat one under "fbm"
    scaling, faster in both under "per-step"), with MC / approximation between 0.25 and 8.5.
    The time-dependent method predicts faster escape with growing H everywhere, wrong for the
    sharp well under "fbm" scaling, is off by factors up to 18 for H > 1/2, and for H < 1/2
    predicts that at most a few per cent of the paths ever escape, where all of them do.
    Both keep Kramers' Markovian prefactor, and neither knows about the memory of the noise
    at the barrier.  See ``assumptions`` in the result.

    Examples
    --------
    >>> from sgn_memory.passage import mean_escape_time_approx
    >>> from sgn_memory.sde import DoubleWell
    >>> w = DoubleWell(barrier=1.0, curvature=1.0)
    >>> a = mean_escape_time_approx(w, hurst=0.5, sigma=0.5)
    >>> round(a.mean, 1) == round(a.kramers, 1) == round(2 * 3.141592653589793 * 2980.957987, 1)
    True
    """
    import scipy.integrate

    hurst = _hurst(hurst)
    sigma = _positive("sigma", sigma)
    scaling = _scaling(scaling)
    if method not in _METHODS:
        raise SgnMemoryError(f"method must be one of {', '.join(_METHODS)}; got {method!r}.")
    if target not in ("minimum", "saddle"):
        raise SgnMemoryError(f"target must be one of minimum, saddle; got {target!r}.")
    if scaling == "per-step":
        if dt is None:
            raise SgnMemoryError('scaling="per-step" needs the step dt.')
        sf = fbm_equivalent_sigma(sigma, hurst, dt, scaling)
    else:
        sf = sigma
    if horizon is not None:
        horizon = _positive("horizon", horizon)
    dU, k, ks = _landmarks(potential, well, barrier, curvature, saddle_curvature)
    nu = np.sqrt(k * ks) / (2 * math.pi) * (2.0 if target == "saddle" else 1.0)
    d_half = sf * sf / 2
    kramers = 1.0 / float((nu * np.exp(-dU / d_half)).sum())
    common = dict(
        kramers=kramers,
        method=method,
        scaling=scaling,
        hurst=hurst,
        sigma=sigma,
        sigma_fbm=sf,
        barriers=tuple(dU.tolist()),
        curvature=k,
        saddle_curvatures=tuple(ks.tolist()),
        target=target,
        assumptions=_ASSUMPTIONS[method],
        horizon=horizon,
    )
    if method == "quasi-stationary" or hurst == 0.5:
        if method == "quasi-stationary":
            d_eff = sf * sf * math.gamma(2 * hurst + 1) * k ** (1 - 2 * hurst) / 2
        else:
            d_eff = d_half
        rate = float((nu * np.exp(-dU / d_eff)).sum())
        restricted = math.nan if horizon is None else -math.expm1(-rate * horizon) / rate
        return EscapeApproximation(
            mean=1.0 / rate,
            conditional_mean=1.0 / rate,
            restricted_mean=restricted,
            escape_probability=1.0,
            _rate=rate,
            **common,
        )
    t_ref = 1.0 / float(nu.sum())  # no escape is faster than this on average: S >= exp(-t/t_ref)
    t_lo = 1e-10 * t_ref
    t_end = _td_end(nu, dU, hurst, sf, t_ref)
    log_t, cum, area, rate_t = _td_grid(nu, dU, hurst, sf, t_lo, t_end)
    surv_end = math.exp(-cum[-1])  # beyond t_end S is flat: below e^-50, or at its limit
    if hurst < 0.5:
        # total hazard: the grid's part plus the exact tail beyond t_end (below e^-60 unless
        # the survival is already below e^-50 there)
        lam_inf = float(cum[-1]) + _td_tail_hazard(nu, dU, hurst, sf, t_end)
        mean = math.inf
        # S - S(inf) = exp(-cum) (1 - exp(-(cum_inf - cum))), without cancellation
        excess = np.exp(-cum) * -np.expm1(-(lam_inf - cum))
        t = np.exp(log_t)
        area_excess = t_lo * excess[0] + scipy.integrate.simpson(excess * t, x=log_t)
        escaped = -math.expm1(-lam_inf)
        conditional = float(area_excess / escaped) if escaped > 0 else math.nan
    else:
        escaped = 1.0
        mean = conditional = float(area[-1])
    restricted = math.nan
    if horizon is not None:
        if horizon >= t_end:
            restricted = float(area[-1]) + surv_end * (horizon - t_end)
        else:
            restricted = float(_td_grid(nu, dU, hurst, sf, t_lo, horizon)[2][-1])
    return EscapeApproximation(
        mean=mean,
        conditional_mean=conditional,
        restricted_mean=restricted,
        escape_probability=escaped,  # -expm1(-total hazard): exact for tiny probabilities
        _grid=(log_t, cum, rate_t),
        **common,
    )
