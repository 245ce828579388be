"""First-passage (escape) times of fBM-driven SDEs: Monte Carlo, survival analysis, approximations.

- :func:`escape_times`  first exit of each simulated path from an interval or basin, with
  censoring at the horizon kept explicit: Kaplan-Meier survival, mean and median with
  censoring-aware confidence intervals, and a test of the exponential law
- :func:`kaplan_meier`  the survival curve with Greenwood standard errors and a log-log band
- :func:`mean_escape_time_approx`  closed-form approximations of the mean escape time for
  fractional noise; both reduce exactly to Kramers' formula at H = 1/2
- :func:`brownian_mean_exit_time`  the exact mean exit time of the H = 1/2 diffusion (quadrature),
  the yardstick for the Monte Carlo and for Kramers' formula
- :func:`escape_study`  Monte Carlo against the approximations over a grid of H, sigma, barrier
  and curvature, under both noise scalings, as a tidy table (:class:`EscapeStudy`)

Conventions: the SDE is dX = -U'(X) dt + sigma dB^H (see :mod:`sgn_memory.sde` for the two noise
scalings); at H = 1/2 its stationary density is proportional to exp(-2U / sigma^2), i.e. the
diffusivity is D = sigma^2 / 2 and Kramers' mean transition time over a barrier dU from a
minimum of curvature k through a saddle of curvature -k_s is

    tau_K = 2 pi / sqrt(k k_s) * exp(dU / D) = 2 pi / sqrt(k k_s) * exp(2 dU / sigma^2).

References
----------
1. H. A. Kramers, "Brownian motion in a field of force and the diffusion model of chemical
   reactions", Physica 7 (1940) 284-304.
2. P. Hänggi, P. Talkner and M. Borkovec, "Reaction-rate theory: fifty years after Kramers",
   Rev. Mod. Phys. 62 (1990) 251-341 (mean first-passage time formula, Sec. VII).
3. E. L. Kaplan and P. Meier, "Nonparametric estimation from incomplete observations",
   J. Am. Stat. Assoc. 53 (1958) 457-481.
4. M. Greenwood, "The natural duration of cancer", Rep. Public Health Med. Subj. 33 (1926).
5. J. D. Kalbfleisch and R. L. Prentice, "The Statistical Analysis of Failure Time Data",
   Wiley (1980), Sec. 1.3 (log-log confidence band).
6. R. Brookmeyer and J. Crowley, "A confidence interval for the median survival time",
   Biometrics 38 (1982) 29-41.
7. J. P. Klein and M. L. Moeschberger, "Survival Analysis", Springer (2003), Sec. 4.5
   (restricted mean and its variance).
8. W. Q. Meeker and L. A. Escobar, "Statistical Methods for Reliability Data", Wiley (1998),
   Sec. 7.6 (exponential mean from time-censored data).
9. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
   networks", arXiv:2105.02062 (the first-passage argument with D(t) = H sigma^2 t^(2H-1)).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.special

from ._batch import array_summary as _summary
from .errors import SgnMemoryError
from .sde import (
    DoubleWell,
    Interval,
    Potential,
    Scaling,
    SdeSimulation,
    Target,
    fbm_equivalent_sigma,
    simulate_sde,
)
from .sde._common import _hurst, _positive, _positive_int, _scaling
from .sde._domains import _inside_fn

__all__ = [
    "EscapeApproximation",
    "EscapeStudy",
    "EscapeTimes",
    "ExponentialCheck",
    "SurvivalCurve",
    "brownian_mean_exit_time",
    "escape_study",
    "escape_times",
    "kaplan_meier",
    "mean_escape_time_approx",
]

Method = Literal["time-dependent", "quasi-stationary"]
_METHODS = ("time-dependent", "quasi-stationary")
# Bootstrap replicates are drawn this many values at a time (bounded memory).
_BOOT_BLOCK_ELEMENTS = 1 << 21
# Log-time grid of the time-dependent approximation (points per decade).
_TD_POINTS_PER_DECADE = 200
# The approximation's survival is integrated until its cumulative hazard reaches this.
_TD_MAX_HAZARD = 50.0


def _confidence(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise SgnMemoryError(f"confidence must lie strictly between 0 and 1; got {value!r}.")
    return float(value)


# ============================================================================================
# Kaplan-Meier


@dataclass(frozen=True, repr=False)
class SurvivalCurve:
    """Kaplan-Meier estimate of P(T > t) with Greenwood standard errors.

    Attributes
    ----------
    time : numpy.ndarray
        Distinct event (exit) times, increasing.
    survival : numpy.ndarray
        S(t) on [time[j], time[j+1]): the product of (1 - events / at_risk) up to time[j].
    stderr : numpy.ndarray
        Greenwood: S(t) sqrt(sum_{t_j <= t} d_j / (n_j (n_j - d_j))).
    lower, upper : numpy.ndarray
        Pointwise confidence band, log-log transformed (Kalbfleisch & Prentice): S^exp(+-z s)
        with s = sqrt(sum d / (n (n - d))) / |log S|; stays inside [0, 1].
    at_risk, events : numpy.ndarray
        n_j (paths with T >= t_j, censored ones included up to their censoring time) and d_j.
    confidence : float
    n, n_censored : int
    """

    time: np.ndarray
    survival: np.ndarray
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray
    confidence: float
    n: int
    n_censored: int

    def __call__(self, t) -> np.ndarray:
        """S(t) at any times (1 before the first event; right-continuous steps)."""
        return self._step(self.survival, t, 1.0)

    def band(self, t) -> tuple[np.ndarray, np.ndarray]:
        """The (lower, upper) band at any times."""
        return self._step(self.lower, t, 1.0), self._step(self.upper, t, 1.0)

    def _step(self, values: np.ndarray, t, before: float) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        j = np.searchsorted(self.time, t, side="right") - 1
        return np.where(j >= 0, values[np.maximum(j, 0)] if values.size else before, before)

    def quantile(self, p: float = 0.5) -> tuple[float, float, float]:
        """(estimate, lower, upper) of the time at which S first falls to 1 - p or below.

        The interval is the Brookmeyer-Crowley one read off the band: the first times at which
        the lower and the upper band fall to 1 - p (as R's ``quantile.survfit``, without its
        midpoint rule for a curve that is flat at exactly 1 - p).  ``inf``: not reached before
        the last observation (e.g. the horizon).
        """
        level = 1.0 - float(p)

        def first(values: np.ndarray) -> float:
            idx = np.flatnonzero(values <= level + 1e-12)
            return float(self.time[idx[0]]) if idx.size else math.inf

        return first(self.survival), first(self.lower), first(self.upper)

    def restricted_mean(self, tau: float) -> tuple[float, float]:
        """(mean, stderr) of min(T, tau): the area under S on [0, tau] (Klein & Moeschberger 4.5).

        Var = sum_{t_j <= tau} A_j^2 d_j / (n_j (n_j - d_j)), A_j = int_{t_j}^{tau} S(u) du.
        Without censoring and with tau >= the largest time this is the sample mean, and the
        variance the (ddof = 0) sample variance over n.
        """
        tau = float(tau)
        sel = self.time <= tau
        t, s = self.time[sel], self.survival[sel]
        edges = np.concatenate([[0.0], t, [tau]])
        heights = np.concatenate([[1.0], s])
        areas = heights * np.diff(edges)  # area of each step on [edge_j, edge_{j+1})
        mean = float(areas.sum())
        a = np.cumsum(areas[::-1])[::-1][1:]  # A_j = area from t_j to tau
        n, d = self.at_risk[sel].astype(float), self.events[sel].astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(n > d, a * a * d / (n * (n - d)), 0.0)
        return mean, float(math.sqrt(terms.sum()))

    def __repr__(self) -> str:
        med = self.quantile(0.5)
        return (
            f"SurvivalCurve(n={self.n}, censored={self.n_censored}, events={int(self.events.sum())}"
            f", distinct times={self.time.size}, median={med[0]:.4g} "
            f"[{med[1]:.4g}, {med[2]:.4g}] at {self.confidence:.0%})"
        )


def kaplan_meier(times, observed, *, confidence: float = 0.95) -> SurvivalCurve:
    """Kaplan-Meier survival curve of right-censored times.

    Parameters
    ----------
    times : array_like
        Event time of each unit, or its censoring time where ``observed`` is False (finite,
        >= 0).  Any shape; flattened.
    observed : array_like of bool
        True where the event (the exit) was seen.
    confidence : float
        Level of the pointwise band.

    Returns
    -------
    SurvivalCurve

    Notes
    -----
    Ties: units censored at an event time count as at risk at that time (the usual convention).
    S(t) = prod_{t_j <= t} (1 - d_j / n_j); Greenwood's variance S^2 sum d_j / (n_j (n_j - d_j));
    the band is log-log transformed so it never leaves [0, 1].

    Examples
    --------
    >>> from sgn_memory.passage import kaplan_meier
    >>> km = kaplan_meier([1, 2, 2, 3, 4, 5], [1, 1, 0, 1, 0, 1])
    >>> km.survival.round(4).tolist()
    [0.8333, 0.6667, 0.4444, 0.0]
    """
    confidence = _confidence(confidence)
    t = np.asarray(times, dtype=float).ravel()
    obs = np.asarray(observed).ravel()
    if obs.dtype != bool:
        if not np.isin(obs, (0, 1)).all():
            raise SgnMemoryError("observed must hold booleans (or 0/1).")
        obs = obs.astype(bool)
    if t.shape != obs.shape:
        raise SgnMemoryError(
            f"times and observed must have the same size; got {t.size} and {obs.size}."
        )
    if t.size == 0:
        raise SgnMemoryError("kaplan_meier needs at least one time.")
    if not np.isfinite(t).all() or (t < 0).any():
        raise SgnMemoryError(
            "times must be finite and >= 0 (give censored units their censoring time)."
        )
    uniq, inv = np.unique(t, return_inverse=True)
    count = np.bincount(inv, minlength=uniq.size)
    events = np.bincount(inv, weights=obs, minlength=uniq.size).astype(np.int64)
    at_risk = t.size - np.concatenate([[0], np.cumsum(count)[:-1]])
    sel = events > 0
    time, d, n = uniq[sel], events[sel], at_risk[sel]
    survival = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(np.where(n > d, d / (n * (n - d)), np.inf))
        stderr = np.where(survival > 0, survival * np.sqrt(gw), 0.0)
        z = scipy.special.ndtri(0.5 + confidence / 2)
        log_s = np.log(survival)
        s_ll = np.sqrt(gw) / np.abs(log_s)
        inner = (survival > 0) & (survival < 1)
        lower = np.where(inner, survival ** np.exp(z * s_ll), survival)
        upper = np.where(inner, survival ** np.exp(-z * s_ll), survival)
    return SurvivalCurve(
        time=time,
        survival=survival,
        stderr=stderr,
        lower=lower,
        upper=upper,
        at_risk=n,
        events=d,
        confidence=confidence,
        n=int(t.size),
        n_censored=int((~obs).sum()),
    )


# ============================================================================================
# exponential law


@dataclass(frozen=True, repr=False)
class ExponentialCheck:
    """Test of the null hypothesis that escape times follow an exponential law.

    Attributes
    ----------
    statistic : float
        sup_{t <= horizon} |S_KM(t) - exp(-t / mean)|, the Kolmogorov-Smirnov distance between
        the Kaplan-Meier curve and the fitted exponential.
    pvalue : float
        Parametric bootstrap (Lilliefors-type: the mean is re-fitted in every replicate):
        replicates are exponential with the fitted mean, put on the same time grid and censored
        at the same horizon, so censoring and discreteness are part of the null distribution.
    mean : float
        Maximum-likelihood mean under the exponential law with censoring at the horizon: total
        time at risk / number of escapes (the sample mean when nothing is censored).  NaN with
        no escape.
    mean_ci : tuple of float
        Chi-square interval for time-censored data, [2E / chi2_{1-a/2}(2r + 2),
        2E / chi2_{a/2}(2r)] (E exposure, r escapes; Meeker & Escobar 7.6).
    cv : float
        Coefficient of variation (ddof = 1) of the times when none is censored (NaN otherwise).
        1 for an exponential law; its standard error under that law is about 1 / sqrt(n).
    n_events : int
    exposure : float
    n_bootstrap : int
    null_hypothesis, method : str
    """

    statistic: float
    pvalue: float
    mean: float
    mean_ci: tuple[float, float]
    cv: float
    n_events: int
    exposure: float
    n_bootstrap: int
    null_hypothesis: str
    method: str

    def __repr__(self) -> str:
        return (
            f"ExponentialCheck(statistic={self.statistic:.4g}, pvalue={self.pvalue:.4g}, "
            f"mean={self.mean:.4g} [{self.mean_ci[0]:.4g}, {self.mean_ci[1]:.4g}], "
            f"cv={self.cv:.4g}, n_events={self.n_events})\n  H0: {self.null_hypothesis}"
        )


def _ks_to_exponential(sorted_t: np.ndarray, horizon: float, mean: np.ndarray) -> np.ndarray:
    """KS distance between the empirical survival (censoring at ``horizon`` only) and exp(-t/mean).

    ``sorted_t`` is (rows, n), increasing along rows, censored entries = inf.  With a common
    censoring time the Kaplan-Meier curve is the empirical survival before it; the supremum is
    reached next to a jump, or at the horizon.
    """
    n = sorted_t.shape[1]
    obs = sorted_t <= horizon
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        f = np.exp(-np.where(obs, sorted_t, 0.0) / mean[:, None])
        i = np.arange(n)
        before = 1.0 - i / n
        after = 1.0 - (i + 1) / n
        gap = np.maximum(np.abs(before - f), np.abs(after - f))
        gap = np.where(obs, gap, 0.0).max(axis=1)
        tail = np.abs(1.0 - obs.sum(axis=1) / n - np.exp(-horizon / mean))
    return np.maximum(gap, tail)


def _exponential_check(
    times: np.ndarray,
    horizon: float,
    resolution: float,
    *,
    confidence: float,
    n_bootstrap: int,
    rng,
) -> ExponentialCheck:
    t = times.ravel()
    n = t.size
    events = t <= horizon
    r = int(events.sum())
    exposure = float(np.minimum(t, horizon).sum())
    null = "escape times are exponential (memoryless escape at a constant rate)"
    method = (
        "KS distance between Kaplan-Meier and the fitted exponential; parametric bootstrap "
        "p-value on the same time grid and horizon"
    )
    alpha = 1.0 - confidence
    if r == 0:
        lo = 2 * exposure / scipy.special.chdtri(2, alpha / 2)
        return ExponentialCheck(
            math.nan, math.nan, math.nan, (lo, math.inf), math.nan, 0, exposure, 0, null, method
        )
    mean = exposure / r
    ci = (
        2 * exposure / scipy.special.chdtri(2 * r + 2, alpha / 2),
        2 * exposure / scipy.special.chdtri(2 * r, 1 - alpha / 2),
    )
    cv = float(np.std(t, ddof=1) / np.mean(t)) if r == n and n > 1 else math.nan
    stat = float(_ks_to_exponential(np.sort(t)[None], horizon, np.array([mean]))[0])
    if n_bootstrap == 0 or r < 2:
        return ExponentialCheck(stat, math.nan, mean, ci, cv, r, exposure, 0, null, method)
    gen = np.random.default_rng(rng)
    rows = max(1, _BOOT_BLOCK_ELEMENTS // n)
    exceed = 0
    done = 0
    while done < n_bootstrap:
        b = min(rows, n_bootstrap - done)
        e = gen.exponential(mean, size=(b, n))
        if resolution > 0:  # exits are seen at the first grid time at or after they happen
            e = resolution * np.maximum(1.0, np.ceil(e / resolution))
        e[e > horizon * (1 + 1e-12)] = np.inf
        e.sort(axis=1)
        fin = np.isfinite(e)
        r_b = fin.sum(axis=1)
        m_b = np.where(fin, e, horizon).sum(axis=1) / np.maximum(r_b, 1)
        d_b = _ks_to_exponential(e, horizon, m_b)
        d_b = np.where(r_b > 0, d_b, np.inf)  # no escape at all: as far from the fit as it gets
        exceed += int((d_b >= stat - 1e-12).sum())
        done += b
    pvalue = (1 + exceed) / (n_bootstrap + 1)
    return ExponentialCheck(stat, pvalue, mean, ci, cv, r, exposure, n_bootstrap, null, method)


# ============================================================================================
# escape times


@dataclass(frozen=True, repr=False)
class EscapeTimes:
    """First-exit times of many paths, with censoring at the horizon kept explicit.

    Attributes
    ----------
    times : numpy.ndarray
        Exit time of each path (shape of the paths' leading axes); ``inf`` where the path was
        still inside at the horizon (censored: its exit time is only known to exceed it).
    censored : numpy.ndarray
        Bool, same shape.
    horizon : float
        End of observation.
    resolution : float
        Spacing of the time grid on which exits were checked (dt, or thin * dt).
    survival : SurvivalCurve
        Kaplan-Meier estimate of P(T > t).
    mean : float
        Area under the Kaplan-Meier curve up to the horizon.  Without censoring it is the sample
        mean of the exit times.  *With* censoring it is the restricted mean E[min(T, horizon)],
        a lower bound of E[T], and ``mean_restricted`` is True; censored times are never
        averaged as if they were exits.
    mean_ci : tuple of float
        Normal interval with the Klein-Moeschberger standard error ``mean_stderr``.
    mean_restricted : bool
    median, median_ci : float, tuple of float
        Kaplan-Meier median and its Brookmeyer-Crowley interval (:meth:`SurvivalCurve.quantile`);
        ``inf`` where the curve (or band) does not reach 1/2 before the horizon.
    exponential : ExponentialCheck
        Test of the exponential law, and the exponential-law mean (total time at risk /
        escapes), which estimates E[T] under heavy censoring if the law is exponential.
    positions : numpy.ndarray or None
        Exit positions (NaN where censored), when known.
    scaling : str or None
        Noise scaling of the simulation the times come from.
    hurst, sigma : float or None
    confidence : float
    settings : Mapping
    """

    times: np.ndarray
    censored: np.ndarray
    horizon: float
    resolution: float
    survival: SurvivalCurve
    mean: float
    mean_stderr: float
    mean_ci: tuple[float, float]
    mean_restricted: bool
    median: float
    median_ci: tuple[float, float]
    exponential: ExponentialCheck
    positions: np.ndarray | None
    scaling: str | None
    hurst: float | None
    sigma: float | None
    confidence: float
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_paths(self) -> int:
        return int(self.censored.size)

    @property
    def n_censored(self) -> int:
        return int(self.censored.sum())

    @property
    def censored_fraction(self) -> float:
        return self.n_censored / self.n_paths

    def __repr__(self) -> str:
        kind = "restricted mean (lower bound of E[T])" if self.mean_restricted else "mean"
        src = "" if self.scaling is None else f"scaling={self.scaling!r}, hurst={self.hurst:g}, "
        return (
            f"EscapeTimes({src}n_paths={self.n_paths}, censored={self.n_censored} "
            f"({self.censored_fraction:.1%}) at horizon {self.horizon:.4g})\n"
            f"  {kind} = {self.mean:.4g} [{self.mean_ci[0]:.4g}, {self.mean_ci[1]:.4g}] "
            f"at {self.confidence:.0%}\n"
            f"  median = {self.median:.4g} [{self.median_ci[0]:.4g}, {self.median_ci[1]:.4g}]\n"
            f"  exponential law: mean {self.exponential.mean:.4g}, "
            f"KS {self.exponential.statistic:.3g}, p = {self.exponential.pvalue:.3g}"
        )


def _first_exit(paths: np.ndarray, inside: Callable, state_ndim: int):
    """(exit index or -1, exit position) per path of ``paths`` shaped (P, N, *state)."""
    ins = inside(paths, state_ndim)  # (P, N)
    if not ins[:, 0].all():
        raise SgnMemoryError(
            f"{int((~ins[:, 0]).sum())} paths start outside the domain; the first point of "
            "every path must lie inside."
        )
    out = ~ins[:, 1:]
    hit = out.any(axis=1)
    step = np.where(hit, out.argmax(axis=1) + 1, -1)
    pos = np.full((paths.shape[0], *paths.shape[2:]), np.nan)
    rows = np.flatnonzero(hit)
    pos[rows] = paths[rows, step[rows]]
    return step, pos


def escape_times(
    source,
    *,
    domain=None,
    dt: float | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 999,
    rng=0,
) -> EscapeTimes:
    """First exit of each path from a domain, and its survival analysis.

    Parameters
    ----------
    source : SdeSimulation or array_like
        A simulation run with ``domain=`` (exit steps were recorded on the fly, with bounded
        memory); a simulation that kept its paths (then pass ``domain``; exits are found on the
        kept grid, every ``thin`` steps); or an array of 1-D paths with time along the last
        axis, starting at time 0 (then pass ``domain`` and ``dt``).
    domain : Interval, Ball or callable, optional
        The open set to leave (``Interval(high=b)``: first crossing of b; a potential's
        :meth:`~sgn_memory.sde.Potential.escape_domain`: escape from a well).
    dt : float, optional
        Time step of array paths.
    confidence : float
        Level of every interval.
    n_bootstrap : int
        Replicates for the p-value of the exponential-law check (0: no p-value).
    rng : None, int or Generator
        Randomness of that bootstrap only (fixed by default, so the p-value is reproducible).

    Returns
    -------
    EscapeTimes

    Notes
    -----
    Paths still inside at the horizon are right-censored there.  The mean is the area under the
    Kaplan-Meier curve up to the horizon: the sample mean when nothing is censored, a lower
    bound otherwise (``mean_restricted``); its interval is normal with the Klein-Moeschberger
    standard error.  For heavily censored samples, ``exponential.mean`` extrapolates under the
    exponential law; check ``exponential.pvalue`` before relying on it.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> from sgn_memory.sde import DoubleWell
    >>> well = DoubleWell(barrier=1.0, curvature=1.0)
    >>> sim = sgn.simulate_sde(well, well.minima[0], hurst=0.5, sigma=0.9, dt=0.02,
    ...                        n_steps=20000, size=400, domain=well.escape_domain(0),
    ...                        keep="final", rng=3)
    >>> esc = sgn.escape_times(sim)
    >>> esc.censored_fraction < 0.1
    True
    """
    confidence = _confidence(confidence)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, numbers.Integral):
        raise SgnMemoryError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}.")
    if n_bootstrap < 0:
        raise SgnMemoryError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}.")
    meta: dict[str, Any] = {"scaling": None, "hurst": None, "sigma": None}
    if isinstance(source, SdeSimulation):
        meta = {"scaling": source.scaling, "hurst": source.hurst, "sigma": source.sigma}
        if source.exit_step is not None:
            if domain is not None and domain is not source.domain:
                raise SgnMemoryError(
                    "this simulation recorded exits from its own domain; leave domain=None "
                    "(or simulate again with the new domain)."
                )
            step = source.exit_step
            positions = source.exit_position
            resolution = source.dt
            horizon = source.horizon
            how = "recorded during the simulation"
        else:
            if source.paths is None:
                raise SgnMemoryError(
                    "this simulation kept neither paths nor exits; simulate with domain=... "
                    'or keep="path".'
                )
            if domain is None:
                raise SgnMemoryError("pass the domain to exit from (e.g. Interval(low, high)).")
            state_ndim = source.x0.ndim
            lead = source.paths.shape[: source.paths.ndim - 1 - state_ndim]
            p = source.paths.reshape(-1, *source.paths.shape[len(lead) :])
            index, positions = _first_exit(p, _inside_fn(domain), state_ndim)
            thin = int(source.settings.get("thin", 1))
            step = np.where(index > 0, index * thin, -1).reshape(lead)
            positions = positions.reshape(lead + source.x0.shape)
            resolution = source.dt * thin
            horizon = float(source.times[-1])
            how = f"from the kept paths (every {thin} steps)"
        times = np.where(step > 0, step * source.dt, np.inf)
    else:
        paths = np.asarray(source, dtype=float)
        if paths.ndim < 1 or paths.shape[-1] < 2:
            raise SgnMemoryError(
                "array paths need time along the last axis with at least 2 points; got shape "
                f"{paths.shape}."
            )
        if domain is None or dt is None:
            raise SgnMemoryError("array paths need domain= and dt=.")
        dt = _positive("dt", dt)
        lead = paths.shape[:-1]
        step, positions = _first_exit(paths.reshape(-1, paths.shape[-1]), _inside_fn(domain), 0)
        step = step.reshape(lead)
        positions = positions.reshape(lead)
        resolution = dt
        horizon = (paths.shape[-1] - 1) * dt
        how = "from array paths"
        times = np.where(step > 0, step * dt, np.inf)
    censored = ~np.isfinite(times)
    if times.size == 0:
        raise SgnMemoryError("there are no paths to analyse.")
    km = kaplan_meier(np.where(censored, horizon, times), ~censored, confidence=confidence)
    mean, se = km.restricted_mean(horizon)
    z = scipy.special.ndtri(0.5 + confidence / 2)
    med, med_lo, med_hi = km.quantile(0.5)
    expo = _exponential_check(
        times, horizon, resolution, confidence=confidence, n_bootstrap=int(n_bootstrap), rng=rng
    )
    return EscapeTimes(
        times=times,
        censored=censored,
        horizon=float(horizon),
        resolution=float(resolution),
        survival=km,
        mean=mean,
        mean_stderr=se,
        mean_ci=(mean - z * se, mean + z * se),
        mean_restricted=bool(censored.any()),
        median=med,
        median_ci=(med_lo, med_hi),
        exponential=expo,
        positions=positions,
        scaling=meta["scaling"],
        hurst=meta["hurst"],
        sigma=meta["sigma"],
        confidence=confidence,
        settings={"exits": how, "n_bootstrap": int(n_bootstrap)},
    )


# ============================================================================================
# exact mean exit time at H = 1/2


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

    With D = sigma^2 / 2, psi = exp(U / D) and Phi(y) = int_a^y exp(-U / D):
    T(x) = (1/D) [ int_a^x psi * (int_a^b psi Phi) / (int_a^b psi) - int_a^x psi Phi ]
    (absorbing at both ends); an infinite end is a natural boundary, replaced by a point beyond
    which the stationary density is below e^-60 of its peak.

    This is the continuous-time answer: the Euler scheme and its grid-time exit checks differ
    from it by O(dt) and O(sqrt(dt)) (see :func:`sgn_memory.simulate_sde`).

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
    shift = uy.min()
    dens = np.exp(-(uy - shift))  # exp(-U/D), scaled
    psi = np.exp(uy - uy.max())  # exp(U/D), scaled differently; ratios cancel the scales
    phi = scipy.integrate.cumulative_simpson(dens, x=y, initial=0.0)
    w = psi * phi  # = exp(U/D) Phi up to a constant factor exp(uy.max() - shift)
    factor = math.exp(uy.max() - shift)
    cum_psi = scipy.integrate.cumulative_simpson(psi, x=y, initial=0.0)
    cum_w = scipy.integrate.cumulative_simpson(w, x=y, initial=0.0)
    at_x = np.interp(x0, y, cum_psi), np.interp(x0, y, cum_w)
    if np.isfinite(a) and np.isfinite(b):
        t = at_x[0] * cum_w[-1] / cum_psi[-1] - at_x[1]
    elif np.isfinite(b):  # reflecting (natural) on the left: T = (1/D) int_x^b psi Phi
        t = cum_w[-1] - at_x[1]
    else:  # natural on the right: T = (1/D) int_a^x psi (int_y^inf exp(-U/D))
        tail = phi[-1] - phi
        wt = psi * tail
        t = np.interp(x0, y, scipy.integrate.cumulative_simpson(wt, x=y, initial=0.0))
    return float(t * factor / d)


# ============================================================================================
# approximations


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


def _td_end(nu, dU, hurst, sf, t_ref) -> float:
    """A time by which the time-dependent survival is below exp(-50) or has levelled off.

    Doubling from t_ref.  H > 1/2: r increases, so S(t) <= exp(-r(t/2) t/2).  H < 1/2: r
    decreases, so S(t) <= exp(-r(t) t); and once c t^q >= 60 + log(1 + t sum(nu) / q) the hazard
    still to come, int_t^inf r, is below e^-60 (q = 1 - 2H, c = dU / (H sf^2)).
    """
    q = 1 - 2 * hurst
    c_min = float((dU / (hurst * sf * sf)).min())
    nu_sum = float(nu.sum())
    t = t_ref
    while t < 1e300:
        if hurst > 0.5:
            if float(_td_rate(nu, dU, hurst, sf, t / 2)) * t / 2 > _TD_MAX_HAZARD:
                return t
        elif float(_td_rate(nu, dU, hurst, sf, t)) * t > _TD_MAX_HAZARD or (
            math.log(c_min) + q * math.log(t) >= math.log(60 + math.log1p(t * nu_sum / q))
        ):
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
    quartic well, and 6-19% short for the flat/sharp pair at dU / D = 3.

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
        lam_inf = float(cum[-1])  # the hazard still to come after t_end is below e^-60
        never = math.exp(-lam_inf)
        mean = math.inf
        # S - S(inf) = exp(-cum) (1 - exp(-(cum_inf - cum))), without cancellation
        excess = np.exp(-cum) * -np.expm1(-(lam_inf - cum))
        t = np.exp(log_t)
        area_excess = t_lo * excess[0] + scipy.integrate.simpson(excess * t, x=log_t)
        escaped = -math.expm1(-lam_inf)
        conditional = float(area_excess / escaped) if escaped > 0 else math.nan
    else:
        never = 0.0
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
        escape_probability=1.0 - never,
        _grid=(log_t, cum, rate_t),
        **common,
    )


# ============================================================================================
# study


@dataclass(frozen=True, repr=False)
class EscapeStudy:
    """Monte Carlo escape times against the approximations over a grid: a tidy table.

    One row per (scaling, sigma, barrier, curvature, hurst) cell; every attribute below except
    ``settings`` is a numpy column of that length.  ``columns()`` gives them as a dict,
    ``to_records()`` as a list of row dicts (``pandas.DataFrame(study.columns())`` builds a
    data frame), ``to_markdown()`` a table, ``h_effect()`` the direction of the H effect.

    Attributes
    ----------
    scaling : numpy.ndarray of str
        Noise scaling of the row ("fbm" or "per-step").
    hurst, sigma, sigma_fbm : numpy.ndarray
        sigma_fbm: the sigma of the continuous-time SDE (= sigma for "fbm").
    barrier, curvature, saddle_curvature : numpy.ndarray
        The landmarks of the starting well (lowest barrier; U'' at the minimum; |U''| at its
        saddle).
    dt, n_steps, horizon, n_paths : numpy.ndarray
    mc_mean, mc_mean_low, mc_mean_high : numpy.ndarray
        Kaplan-Meier mean of the escape time and its interval; *restricted to the horizon*
        (a lower bound of E[T]) where ``mc_restricted``.
    mc_restricted : numpy.ndarray of bool
    mc_mean_exp, mc_mean_exp_low, mc_mean_exp_high : numpy.ndarray
        Total time at risk / escapes, with its chi-square interval: the sample mean when nothing
        is censored, the exponential-law estimate of E[T] otherwise (trust it when
        ``exp_pvalue`` is not small).  NaN (low = a lower bound) when nothing escaped.
    mc_median : numpy.ndarray
        Kaplan-Meier median (inf: not reached by the horizon).
    censored_fraction, exp_pvalue : numpy.ndarray
        Paths still inside at the horizon; p-value of the exponential-law check.
    kramers : numpy.ndarray
        Kramers' H = 1/2 time at sigma_fbm.
    approx_time_dependent, td_escape_probability : numpy.ndarray
        The time-dependent approximation's E[T] (inf for H < 1/2, where it predicts that only
        the fraction ``td_escape_probability`` ever escapes).
    approx_quasi_stationary : numpy.ndarray
    ratio_time_dependent, ratio_quasi_stationary : numpy.ndarray
        ``mc_mean_exp / approx``: 1 is perfect agreement.
    settings : Mapping
        Everything else that determined the numbers (potential, target, well, seeds, ...).
    """

    scaling: np.ndarray
    hurst: np.ndarray
    sigma: np.ndarray
    sigma_fbm: np.ndarray
    barrier: np.ndarray
    curvature: np.ndarray
    saddle_curvature: np.ndarray
    dt: np.ndarray
    n_steps: np.ndarray
    horizon: np.ndarray
    n_paths: np.ndarray
    mc_mean: np.ndarray
    mc_mean_low: np.ndarray
    mc_mean_high: np.ndarray
    mc_restricted: np.ndarray
    mc_mean_exp: np.ndarray
    mc_mean_exp_low: np.ndarray
    mc_mean_exp_high: np.ndarray
    mc_median: np.ndarray
    censored_fraction: np.ndarray
    exp_pvalue: np.ndarray
    kramers: np.ndarray
    approx_time_dependent: np.ndarray
    td_escape_probability: np.ndarray
    approx_quasi_stationary: np.ndarray
    ratio_time_dependent: np.ndarray
    ratio_quasi_stationary: np.ndarray
    settings: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def column_names() -> tuple[str, ...]:
        return tuple(f for f in EscapeStudy.__dataclass_fields__ if f != "settings")

    def columns(self) -> dict[str, np.ndarray]:
        """The table as {column name: numpy array}."""
        return {name: getattr(self, name) for name in self.column_names()}

    def to_records(self) -> list[dict[str, Any]]:
        """The table as a list of rows ({column: Python scalar})."""
        cols = self.columns()
        return [{k: v[i].item() for k, v in cols.items()} for i in range(len(self))]

    def __len__(self) -> int:
        return int(self.hurst.size)

    def to_markdown(self, columns: Sequence[str] | None = None, *, digits: int = 4) -> str:
        """A GitHub Markdown table of the given columns (default: the ones that matter)."""
        columns = list(columns or _DEFAULT_MD_COLUMNS)
        unknown = [c for c in columns if c not in self.column_names()]
        if unknown:
            raise SgnMemoryError(f"unknown column(s) {unknown}; see EscapeStudy.column_names().")
        cols = self.columns()
        rows = [[_fmt_cell(cols[c][i], digits) for c in columns] for i in range(len(self))]
        widths = [max([len(c)] + [len(r[j]) for r in rows]) for j, c in enumerate(columns)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(x.rjust(w) for x, w in zip(cells, widths, strict=True)) + " |"

        rule = "| " + " | ".join("-" * (w - 1) + ":" for w in widths) + " |"
        return "\n".join([line(columns), rule, *(line(r) for r in rows)])

    def h_effect(self) -> dict[str, np.ndarray]:
        """Direction of the H effect per (scaling, sigma, barrier, curvature) group.

        Least-squares slopes of log(escape time) against H, separately over H <= 1/2 and
        H >= 1/2 (the effect need not be monotone), for the Monte Carlo (``mc_mean_exp``; cells
        where nothing escaped are left out, so look at ``censored_fraction`` too) and for each
        approximation (infinite values left out).  Positive slope: escape takes *longer* as H
        grows (the seed paper's claim); ``direction_*`` says it in words ("n/a" with fewer
        than two usable H values).
        """
        keys = list(
            zip(
                self.scaling.tolist(),
                self.sigma.tolist(),
                self.barrier.tolist(),
                self.curvature.tolist(),
                strict=True,
            )
        )
        out: dict[str, list] = {
            name: []
            for name in (
                "scaling",
                "sigma",
                "barrier",
                "curvature",
                "n_hurst",
                "slope_mc_below_half",
                "slope_mc_above_half",
                "slope_quasi_stationary_below_half",
                "slope_quasi_stationary_above_half",
                "slope_time_dependent_above_half",
                "direction_below_half",
                "direction_above_half",
            )
        }
        for g in dict.fromkeys(keys):
            sel = np.array([k == g for k in keys])
            h = self.hurst[sel]
            below, above = h <= 0.5, h >= 0.5

            def slope(y, part, h=h, sel=sel):
                return _log_slope(h[part], y[sel][part])

            for name, value in zip(("scaling", "sigma", "barrier", "curvature"), g, strict=True):
                out[name].append(value)
            out["n_hurst"].append(int(sel.sum()))
            s_lo, s_hi = slope(self.mc_mean_exp, below), slope(self.mc_mean_exp, above)
            out["slope_mc_below_half"].append(s_lo)
            out["slope_mc_above_half"].append(s_hi)
            out["slope_quasi_stationary_below_half"].append(
                slope(self.approx_quasi_stationary, below)
            )
            out["slope_quasi_stationary_above_half"].append(
                slope(self.approx_quasi_stationary, above)
            )
            out["slope_time_dependent_above_half"].append(slope(self.approx_time_dependent, above))
            out["direction_below_half"].append(_direction(s_lo))
            out["direction_above_half"].append(_direction(s_hi))
        return {k: np.asarray(v) for k, v in out.items()}

    def __repr__(self) -> str:
        scal = sorted(set(self.scaling.tolist()))
        return (
            f"EscapeStudy({len(self)} rows, scalings={scal}, hurst[{_summary(self.hurst)}], "
            f"censored_fraction[{_summary(self.censored_fraction)}], "
            f"ratio_quasi_stationary[{_summary(self.ratio_quasi_stationary)}], "
            f"ratio_time_dependent[{_summary(self.ratio_time_dependent)}])"
        )


def _direction(slope: float) -> str:
    if not math.isfinite(slope):
        return "n/a"
    return "longer with H" if slope > 0 else "shorter with H"


def _log_slope(h: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against h over the finite positive y (NaN if < 2)."""
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(h[ok], np.log(y[ok]), 1)[0])


_DEFAULT_MD_COLUMNS = (
    "scaling",
    "hurst",
    "sigma",
    "barrier",
    "curvature",
    "n_steps",
    "mc_mean_exp",
    "mc_mean_exp_low",
    "mc_mean_exp_high",
    "censored_fraction",
    "exp_pvalue",
    "approx_quasi_stationary",
    "ratio_quasi_stationary",
    "approx_time_dependent",
    "ratio_time_dependent",
)


def _fmt_cell(v, digits: int) -> str:
    if isinstance(v, np.bool_ | bool):
        return "yes" if v else "no"
    if isinstance(v, str | np.str_):
        return str(v)
    if isinstance(v, np.integer | int):
        return f"{int(v):,}"
    v = float(v)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _grid_values(name: str, values, check) -> list[float]:
    vals = np.atleast_1d(np.asarray(values, dtype=float)).ravel().tolist()
    if not vals:
        raise SgnMemoryError(f"{name} needs at least one value.")
    return [check(v) for v in vals]


def escape_study(
    hursts,
    sigmas,
    barriers,
    curvatures,
    *,
    scalings: Sequence[str] = ("fbm", "per-step"),
    dt: float = 0.01,
    n_paths: int = 1000,
    n_steps: int | None = None,
    horizon_factor: float = 8.0,
    min_steps: int = 1000,
    max_steps: int = 100_000,
    potential: Callable[[float, float], Potential] | None = None,
    saddle_curvature: float = 1.0,
    well: int = 0,
    target: Target = "minimum",
    confidence: float = 0.95,
    n_bootstrap: int = 199,
    lanes: int | None = None,
    rng=None,
    progress: Callable[[str], None] | None = None,
) -> EscapeStudy:
    """Escape experiments over a grid of H, sigma, barrier and curvature, under both scalings.

    For every cell the paths start at the minimum of ``well`` and run until they escape
    (:meth:`~sgn_memory.sde.Potential.escape_domain` with ``target``) or reach the horizon;
    the escape times go through :func:`escape_times` and are set against both
    :func:`mean_escape_time_approx` methods.

    Parameters
    ----------
    hursts, sigmas, barriers, curvatures : float or sequence of float
        The grid (all combinations).
    scalings : sequence of {"fbm", "per-step"}
        Noise scalings to run (each cell once per scaling).
    dt : float
        Euler step (keep curvature * dt well below 1; the study's accuracy depends on it).
    n_paths : int
        Paths per cell.
    n_steps : int, optional
        Horizon in steps for every cell.  Default: ``horizon_factor`` times the
        quasi-stationary approximation of the mean, clipped to [min_steps, max_steps]; the
        censored fraction in the table tells where that was too short.
    potential : callable, optional
        ``potential(barrier, curvature) -> Potential``.  Default:
        ``DoubleWell(barrier=barrier, curvature=curvature, saddle_curvature=saddle_curvature)``
        (piecewise-parabolic: the saddle stays the same while the well's curvature changes).
    well : int
        Index of the starting minimum.
    target : {"minimum", "saddle"}
        What counts as escape (see :meth:`~sgn_memory.sde.Potential.escape_domain`).
    confidence, n_bootstrap
        As in :func:`escape_times`.
    lanes : int, optional
        Passed to :func:`~sgn_memory.sde.simulate_sde` (memory against speed).
    rng : None, int or Generator
        Every cell gets its own stream spawned from it.
    progress : callable, optional
        Called with a one-line message before each cell.

    Returns
    -------
    EscapeStudy

    Examples
    --------
    >>> from sgn_memory.passage import escape_study
    >>> study = escape_study([0.4, 0.6], 0.8, 1.0, 1.0, scalings=["fbm"], n_paths=100,
    ...                      dt=0.05, max_steps=4000, n_bootstrap=0, rng=0)
    >>> len(study), study.scaling.tolist()
    (2, ['fbm', 'fbm'])
    """
    hs = _grid_values("hursts", hursts, _hurst)
    sig = _grid_values("sigmas", sigmas, lambda v: _positive("sigma", v))
    bar = _grid_values("barriers", barriers, lambda v: _positive("barrier", v))
    cur = _grid_values("curvatures", curvatures, lambda v: _positive("curvature", v))
    scal = [_scaling(s) for s in ([scalings] if isinstance(scalings, str) else list(scalings))]
    if not scal:
        raise SgnMemoryError("scalings needs at least one of fbm, per-step.")
    dt = _positive("dt", dt)
    n_paths = _positive_int("n_paths", n_paths)
    horizon_factor = _positive("horizon_factor", horizon_factor)
    min_steps = _positive_int("min_steps", min_steps)
    max_steps = _positive_int("max_steps", max_steps)
    if n_steps is not None:
        n_steps = _positive_int("n_steps", n_steps)
    if potential is None:
        saddle_curvature = _positive("saddle_curvature", saddle_curvature)

        def potential(b: float, k: float) -> Potential:
            return DoubleWell(barrier=b, curvature=k, saddle_curvature=saddle_curvature)

        pot_name = f"DoubleWell(barrier, curvature, saddle_curvature={saddle_curvature:g})"
    else:
        pot_name = getattr(potential, "__name__", repr(potential))
    cells = [(s, sg, b, k, h) for s in scal for sg in sig for b in bar for k in cur for h in hs]
    gens = np.random.default_rng(rng).spawn(len(cells))
    rows: dict[str, list] = {name: [] for name in EscapeStudy.column_names()}
    for i, ((s, sg, b, k, h), gen) in enumerate(zip(cells, gens, strict=True)):
        pot = potential(b, k)
        if not isinstance(pot, Potential):
            raise SgnMemoryError("potential(barrier, curvature) must return a Potential.")
        w = pot.well(well)
        domain = pot.escape_domain(well, target=target)
        approx = {
            m: mean_escape_time_approx(
                pot, hurst=h, sigma=sg, well=well, scaling=s, dt=dt, method=m, target=target
            )
            for m in _METHODS
        }
        qs = approx["quasi-stationary"].mean
        steps = n_steps or int(np.clip(math.ceil(horizon_factor * qs / dt), min_steps, max_steps))
        if progress is not None:
            progress(
                f"cell {i + 1}/{len(cells)}: scaling={s}, H={h:g}, sigma={sg:g}, barrier={b:g}, "
                f"curvature={k:g}, {n_paths} paths x {steps} steps"
            )
        sim = simulate_sde(
            pot,
            w.minimum,
            hurst=h,
            sigma=sg,
            dt=dt,
            n_steps=steps,
            size=n_paths,
            scaling=s,
            rng=gen,
            domain=domain,
            keep="final",
            lanes=lanes,
        )
        esc = escape_times(sim, confidence=confidence, n_bootstrap=n_bootstrap, rng=gen)
        e = esc.exponential
        td = approx["time-dependent"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_td = e.mean / td.mean
            ratio_qs = e.mean / qs
        values = {
            "scaling": s,
            "hurst": h,
            "sigma": sg,
            "sigma_fbm": approx["quasi-stationary"].sigma_fbm,
            "barrier": w.barrier,
            "curvature": w.curvature,
            "saddle_curvature": abs(w.saddle_curvatures[int(np.argmin(w.barriers))]),
            "dt": dt,
            "n_steps": steps,
            "horizon": steps * dt,
            "n_paths": n_paths,
            "mc_mean": esc.mean,
            "mc_mean_low": esc.mean_ci[0],
            "mc_mean_high": esc.mean_ci[1],
            "mc_restricted": esc.mean_restricted,
            "mc_mean_exp": e.mean,
            "mc_mean_exp_low": e.mean_ci[0],
            "mc_mean_exp_high": e.mean_ci[1],
            "mc_median": esc.median,
            "censored_fraction": esc.censored_fraction,
            "exp_pvalue": e.pvalue,
            "kramers": td.kramers,
            "approx_time_dependent": td.mean,
            "td_escape_probability": td.escape_probability,
            "approx_quasi_stationary": qs,
            "ratio_time_dependent": ratio_td,
            "ratio_quasi_stationary": ratio_qs,
        }
        for name, v in values.items():
            rows[name].append(v)
    cols = {name: np.asarray(v) for name, v in rows.items()}
    return EscapeStudy(
        **cols,
        settings={
            "potential": pot_name,
            "well": well,
            "target": target,
            "confidence": confidence,
            "n_bootstrap": n_bootstrap,
            "horizon": "fixed n_steps"
            if n_steps
            else (
                f"{horizon_factor:g} x quasi-stationary mean, clipped to [{min_steps}, {max_steps}]"
                " steps"
            ),
            "seeds": "one stream per cell, spawned from rng in row order",
        },
    )
