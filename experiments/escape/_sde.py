"""Part 1 (``sde``): the fBM-driven SDE in the flat and the sharp well of a double well."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import sgn_memory as sgn
from sgn_memory.sde import DoubleWell

from ._common import _escape_columns


# ============================================================================ part 1: the SDE
def _run_sde(settings: dict, out: Path, log: Callable[[str], None], verbose: bool) -> dict:
    s = settings["sde"]
    gens = np.random.default_rng(settings["seed"]).spawn(len(s["scalings"]) * 2 * len(s["hursts"]))
    rows = []
    cells = itertools.product(s["scalings"], ("flat", "sharp"), s["hursts"])
    for (scaling, well, hurst), gen in zip(cells, gens, strict=True):
        k, other = (s["flat"], s["sharp"]) if well == "flat" else (s["sharp"], s["flat"])
        # the paths start in well 0 (left), of curvature k; the other well is the landing side
        pot = DoubleWell(
            barrier=s["depth"],
            curvature=k,
            saddle_curvature=s["saddle_curvature"],
            curvature_right=other,
        )
        t0 = time.perf_counter()
        sim = sgn.simulate_sde(
            pot,
            pot.well(0).minimum,
            hurst=hurst,
            sigma=s["sigma"],
            dt=s["dt"],
            n_steps=s["n_steps"],
            size=s["n_paths"],
            scaling=scaling,
            domain=pot.escape_domain(0, target=s["target"]),
            keep="final",
            rng=gen,
        )
        esc = sgn.escape_times(
            sim, confidence=settings["confidence"], n_bootstrap=settings["n_bootstrap"], rng=gen
        )
        approx = {
            m: sgn.mean_escape_time_approx(
                pot,
                hurst=hurst,
                sigma=s["sigma"],
                scaling=scaling,
                dt=s["dt"],
                method=m,
                target=s["target"],
                horizon=esc.horizon,
            )
            for m in ("quasi-stationary", "time-dependent")
        }
        qs, td = approx["quasi-stationary"], approx["time-dependent"]
        rows.append(
            {
                "scaling": scaling,
                "well": well,
                "curvature": k,
                "depth": s["depth"],
                "saddle_curvature": s["saddle_curvature"],
                "hurst": hurst,
                "sigma": s["sigma"],
                "sigma_fbm": sim.sigma_fbm,
                "dt": s["dt"],
                "n_steps": s["n_steps"],
                "target": s["target"],
                **_escape_columns(esc),
                "kramers": qs.kramers,
                "approx_qs_mean": qs.mean,
                "approx_qs_restricted": qs.restricted_mean,
                "approx_td_mean": td.mean,
                "approx_td_restricted": td.restricted_mean,
                "approx_td_escape_probability": td.escape_probability,
            }
        )
        if verbose:
            log(
                f"    sde {scaling:8s} {well:5s} H={hurst:.2f}: mean {esc.mean:.4g}"
                f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
            )
    return {"table": pd.DataFrame(rows)}
