"""Escape experiments over a grid of H, sigma, barrier and curvature: a tidy table."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._batch import array_summary as _summary
from ..errors import SgnMemoryError
from ..sde import (
    DoubleWell,
    Potential,
    Target,
    simulate_sde,
)
from ..sde._common import _hurst, _positive, _positive_int, _scaling
from ._approx import _METHODS, mean_escape_time_approx
from ._survival import escape_times


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
