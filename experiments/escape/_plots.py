"""The figures: ``plots/escape_*.png``, one per part."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

import sgn_memory as sgn

#: The figure of each part, under ``out/plots/``.
_PLOTS = {
    "sde": "escape_sde.png",
    "sgd": "escape_sgd_hurst.png",
    "saddle": "escape_saddle_survival.png",
}


# ============================================================================ plots
def _plots(part: str, frame: pd.DataFrame, times: pd.DataFrame | None, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    if part == "sde":
        scalings = list(dict.fromkeys(frame.scaling))
        fig, axes = plt.subplots(
            1, len(scalings), figsize=(5 * len(scalings), 4), constrained_layout=True, squeeze=False
        )
        for ax, scaling in zip(axes[0], scalings, strict=True):
            for well, color in (("flat", "tab:blue"), ("sharp", "tab:red")):
                g = frame[(frame.scaling == scaling) & (frame.well == well)].sort_values("hurst")
                yerr = [g.km_mean - g.km_mean_low, g.km_mean_high - g.km_mean]
                ax.errorbar(
                    g.hurst,
                    g.km_mean,
                    yerr=yerr,
                    color=color,
                    marker="o",
                    capsize=3,
                    label=f"{well} (U''={g.curvature.iloc[0]:g}): KM mean",
                )
                ax.plot(
                    g.hurst,
                    g.approx_qs_restricted,
                    color=color,
                    ls="--",
                    lw=1,
                    label=f"{well}: quasi-stationary approx. (restricted)",
                )
                cens = g[g.mean_restricted]
                ax.scatter(
                    cens.hurst, cens.km_mean, facecolors="none", edgecolors="k", s=80, zorder=3
                )
            ax.set_yscale("log")
            ax.set_xlabel("Hurst exponent H")
            ax.set_ylabel("mean escape time (restricted to the horizon)")
            ax.set_title(f"SDE, '{scaling}' scaling (circled: censored paths)")
            ax.legend(fontsize=7)
        fig.savefig(folder / "escape_sde.png", dpi=110)
        plt.close(fig)
    elif part == "sgd":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for ax, est in zip(axes, ("whittle", "dfa"), strict=True):
            stacked = 0  # censored cells share the top: stack their labels
            for name, marker in (("sharp", "^"), ("flat", "o")):
                g = frame[frame.minimum == name]
                for r in g.to_dict("records"):
                    face = "none" if r["mean_restricted"] else None
                    ax.errorbar(
                        r[f"hurst_{est}"],
                        r["km_mean"],
                        yerr=[
                            [r["km_mean"] - r["km_mean_low"]],
                            [r["km_mean_high"] - r["km_mean"]],
                        ],
                        marker=marker,
                        capsize=3,
                        mfc=face,
                        color="tab:red" if name == "sharp" else "tab:blue",
                    )
                    rise = 3
                    if r["mean_restricted"]:
                        rise = -8 - 7 * stacked
                        stacked += 1
                    ax.annotate(
                        f"{name} B={r['batch_size']}, lr={r['lr']:g}",
                        (r[f"hurst_{est}"], r["km_mean"]),
                        fontsize=6,
                        xytext=(4, rise),
                        textcoords="offset points",
                    )
            ax.axvline(
                float(np.nanmedian(frame[f"hurst_{est}_shuffled"])), color="grey", ls=":", lw=1
            )
            ax.set_yscale("log")
            ax.set_xlabel(f"H of the SGD noise ({est}; dotted: shuffled baseline)")
            ax.set_ylabel("mean escape time, iterations (restricted)")
            ax.set_title("SGD: sharp ▲ red, flat ● blue (open: censored runs)", fontsize=9)
        fig.savefig(folder / "escape_sgd_hurst.png", dpi=110)
        plt.close(fig)
    elif part == "saddle" and times is not None:
        optimizers = list(dict.fromkeys(frame.optimizer))
        fig, axes = plt.subplots(
            1,
            len(optimizers),
            figsize=(4.5 * len(optimizers), 3.8),
            constrained_layout=True,
            squeeze=False,
            sharey=True,
        )
        horizon = float(frame.horizon.iloc[0])
        first = float(frame.check_every.iloc[0])
        styles = ["-", "--", ":", "-."]
        rhos = sorted(times.rho.dropna().unique())
        combos = sorted({(m, b) for m, b in zip(times.momentum, times.batch_size, strict=True)})
        for ax, opt in zip(axes[0], optimizers, strict=True):
            g = times[times.optimizer == opt]
            keys = ["momentum", "batch_size", "rho"]
            for (mom, b, rho), part in g.groupby(keys, dropna=False, sort=True):
                km = sgn.kaplan_meier(part.time.to_numpy(), part.escaped.to_numpy())
                # from the first possible exit (log axis), flat after the last exit
                t = np.concatenate([[first], km.time, [horizon]])
                y = np.concatenate([[1.0], km.survival, [km.survival[-1] if km.time.size else 1.0]])
                ls = "-" if math.isnan(rho) else styles[rhos.index(rho) % len(styles)]
                label = f"momentum {mom:g}, B={b}" + ("" if math.isnan(rho) else f", rho={rho:g}")
                color = f"C{combos.index((mom, b)) % 10}"
                ax.step(t, y, where="post", ls=ls, color=color, label=label)
            ax.set_xscale("log")
            ax.set_xlabel("iterations (censored at the right end)")
            ax.set_title(opt)
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("P(not yet escaped)  (Kaplan-Meier)")
        fig.savefig(folder / "escape_saddle_survival.png", dpi=110)
        plt.close(fig)
