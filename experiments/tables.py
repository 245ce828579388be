"""Tables and plots across the runs of a sweep: ``results.csv`` (one row per run and store),
``summary.csv`` (mean and standard deviation over seeds of every configuration) and
``results.md`` (the summary, group by group, with the command that produced it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RUN_DEFAULTS

#: Settings that identify a configuration (the seed excluded).
SETTING_COLUMNS = [
    "model",
    "dataset",
    "optimizer",
    "batch_size",
    "lr",
    "weight_decay",
    "rho",
    "steps",
    "reference",
    "sampling",
]

#: Metrics tabulated, in order (mean and sd over seeds in the summary).
METRICS = [
    "test_accuracy",
    "sharpness",
    "hurst_rs_median",
    "hurst_rs_baseline_mean",
    "hurst_dfa_median",
    "hurst_dfa_baseline_mean",
    "hurst_whittle_median",
    "hurst_whittle_baseline_mean",
    "hurst_whittle_excess",
    "tan2021_mean_hurst",
    "lo_rejected_bh",
    "gauss_shapiro_rejected_bh",
    "gauss_dagostino_rejected_bh",
    "tail_index_median",
    "stable_alpha_median",
]

_SHORT = {
    "test_accuracy": "test acc",
    "sharpness": "λ_max",
    "hurst_rs_median": "H R/S",
    "hurst_rs_baseline_mean": "shuffled",
    "hurst_dfa_median": "H DFA",
    "hurst_dfa_baseline_mean": "shuffled",
    "hurst_whittle_median": "H Whittle",
    "hurst_whittle_baseline_mean": "shuffled",
    "hurst_whittle_excess": "H-shuffled (Whittle)",
    "tan2021_mean_hurst": "H tan2021",
    "lo_rejected_bh": "Lo rej.",
    "gauss_shapiro_rejected_bh": "SW rej.",
    "gauss_dagostino_rejected_bh": "K² rej.",
    "tail_index_median": "alpha tail",
    "stable_alpha_median": "alpha stable",
}


def collect_results(out: Path) -> pd.DataFrame:
    """One row per (run, store) from every ``result.json`` under ``out/runs`` (hidden folders,
    the runner's temporary ones, left out)."""
    rows = []
    for path in sorted((Path(out) / "runs").glob("*/*/result.json")):
        if path.parent.name.startswith("."):
            continue
        result = json.loads(path.read_text())
        base = {
            "group": result["group"],
            "run_id": result["run_id"],
            "seed": result["seed"],
            **{c: result["settings"].get(c, RUN_DEFAULTS[c]) for c in SETTING_COLUMNS},
            "n_parameters": result["n_parameters"],
            "diverged_at": result["diverged_at"],
            "train_loss": result.get("train_loss"),
            "test_loss": result.get("test_loss"),
            "test_accuracy": result.get("test_accuracy"),
            "seconds": result["seconds"],
        }
        stores = result.get("stores") or {"(none)": {}}
        for name, row in stores.items():
            entry = dict(base)
            entry["protocol"] = "trajectory" if name == "trajectory" else "checkpoint"
            entry["store"] = name
            entry["checkpoint_step"] = row.get("step")
            entry["sharpness"] = row.get("sharpness", result.get("sharpness"))
            entry["n_series"] = row.get("n_series")
            for m in METRICS:
                if m not in entry or entry[m] is None:
                    entry[m] = row.get(m)
            ci = row.get("hurst_whittle_excess_ci")
            entry["hurst_whittle_excess_lo"], entry["hurst_whittle_excess_hi"] = (
                ci if isinstance(ci, list) and len(ci) == 2 else (None, None)
            )
            rows.append(entry)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        for m in METRICS:
            frame[m] = pd.to_numeric(frame[m], errors="coerce")
    return frame


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per configuration, protocol and store."""
    keys = ["group", *SETTING_COLUMNS, "protocol", "store"]
    g = frame.groupby(keys, dropna=False, sort=False)
    summary = g[METRICS].agg(["mean", "std"])
    summary.columns = [f"{m}_{stat}" for m, stat in summary.columns]
    summary.insert(0, "n_seeds", g.size())
    return summary.reset_index()


def _varying(frame: pd.DataFrame) -> list[str]:
    return [c for c in SETTING_COLUMNS if frame[c].astype(str).nunique() > 1]


def _cell(mean, sd, digits=3) -> str:
    if mean is None or not np.isfinite(mean):
        return "—"
    if sd is None or not np.isfinite(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown(summary: pd.DataFrame, *, title: str, command: str) -> str:
    lines = [f"# {title}", "", f"Produced by `{command}`.", ""]
    lines.append(
        "Each cell: mean ± standard deviation over seeds. H: median over recorded coordinates; "
        "'shuffled': the same estimator on time-shuffled copies (no memory by construction). "
        "'rej.': fraction of coordinates rejected at 5% after Benjamini-Hochberg (Lo: no long "
        "memory; SW/K²: Gaussian). λ_max: top Hessian eigenvalue (final weights for the "
        "trajectory, the checkpoint's for a probe)."
    )
    for group, part in summary.groupby("group", sort=False):
        varying = _varying(part) or ["model"]
        lines += ["", f"## {group}", ""]
        header = [*varying, "protocol", "seeds", *(_SHORT[m] for m in METRICS)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for _, r in part.iterrows():
            cells = [str(r[c]) for c in varying] + [r["store"], str(r["n_seeds"])]
            for m in METRICS:
                digits = 2 if m in ("sharpness",) else 3
                cells.append(_cell(r[f"{m}_mean"], r[f"{m}_std"], digits))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(frame: pd.DataFrame, folder: Path) -> list[str]:
    """H (Whittle, minus its shuffled baseline) against sharpness, one colour per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    data = frame.dropna(subset=["sharpness", "hurst_whittle_median"])
    if not data.empty:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for ax, proto in zip(axes, ("trajectory", "checkpoint"), strict=True):
            part = data[data.protocol == proto]
            for group, g in part.groupby("group", sort=False):
                ax.scatter(g["sharpness"], g["hurst_whittle_median"], label=group, s=18)
            ax.set_xscale("log")
            ax.set_xlabel("top Hessian eigenvalue λ_max")
            ax.set_ylabel("median H (Whittle)")
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
            ax.set_title(f"{proto} noise")
            if len(part):
                ax.legend(fontsize=7)
        fig.savefig(folder / "hurst_vs_sharpness.png", dpi=110)
        plt.close(fig)
        names.append("hurst_vs_sharpness.png")
    return names


def write_tables(out: Path, *, title: str, command: str) -> pd.DataFrame:
    """Write results.csv, summary.csv, results.md and plots/ under ``out``; return the summary."""
    out = Path(out)
    frame = collect_results(out)
    if frame.empty:
        return frame
    frame.to_csv(out / "results.csv", index=False, float_format="%.6g")
    summary = summarise(frame)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    text = markdown(summary, title=title, command=command)
    names = plot(frame, out / "plots")
    text += "".join(f"\n![{n}](plots/{n})\n" for n in names)
    (out / "results.md").write_text(text)
    return summary
