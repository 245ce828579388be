"""First exits, Kaplan-Meier survival and the exponential-law check."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.special

from ..errors import SgnMemoryError
from ..sde import (
    SdeSimulation,
)
from ..sde._common import _positive
from ..sde._domains import _inside_fn

# Bootstrap replicates are drawn this many values at a time (bounded memory).
_BOOT_BLOCK_ELEMENTS = 1 << 21


def _confidence(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise SgnMemoryError(f"confidence must lie strictly between 0 and 1; got {value!r}.")
    return float(value)


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
        Valid when the time grid (dt times any thinning) is much finer than the mean: p-values
        are close to uniform under the null at grid / mean <= 0.01, but distorted at 0.05 and
        above (the statistic compares grid times with a continuous law) -- simulate with a finer
        grid, or thin less, before reading them.
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
            if domain is not None and domain != source.domain:
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
