"""Write an :class:`~sgn_memory.analyze.Analysis` to a report folder.

The folder holds ``summary.json`` (versioned schema, NaN written as null), ``series.csv`` (one
row per analysed series), ``report.md``, a self-contained ``report.html`` (plots embedded) and
the PNG plots.  Rendering lives here only: the numerics never import matplotlib.  The folder is
written to a temporary sibling and renamed into place, so an interrupted run never leaves a
half report that looks whole.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SgnMemoryError

REPORT_SCHEMA_VERSION = 1

# the columns of the short table (stdout and report.md): (column, header, format)
KEY_COLUMNS = (
    ("n_analysed", "series", "{:d}"),
    ("n_excluded", "excluded", "{:d}"),
    ("hurst_rs_median", "H R/S", "{:.3f}"),
    ("hurst_dfa_median", "H DFA", "{:.3f}"),
    ("hurst_whittle_median", "H Whittle", "{:.3f}"),
    ("hurst_whittle_baseline_mean", "shuffled", "{:.3f}"),
    ("hurst_whittle_excess", "H - shuffled", "{:+.3f}"),
    ("lo_rejected_bh", "Lo rej. (BH)", "{:.2f}"),
    ("gauss_shapiro_rejected_bh", "Gauss rej. SW (BH)", "{:.2f}"),
    ("tail_index_median", "tail index", "{:.2f}"),
    ("stable_alpha_median", "stable alpha", "{:.2f}"),
)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def summary_dict(analysis) -> dict[str, Any]:
    """The content of ``summary.json``."""
    from . import __version__

    return _clean(
        {
            "schema_version": REPORT_SCHEMA_VERSION,
            "sgn_memory": __version__,
            "settings": analysis.settings,
            "inputs": [
                {
                    "label": s.label,
                    "kind": s.kind,
                    "n_steps": s.n_steps,
                    "n_series": s.n_series,
                    **({"damaged_chunks": list(s.damage)} if s.damage else {}),
                    **({"salvage": s.salvaged} if s.salvaged else {}),
                }
                for s in analysis.sources
            ],
            "runs": analysis.runs.to_dict(orient="records"),
            "layers": analysis.summary.to_dict(orient="records"),
        }
    )


def format_table(frame, columns=KEY_COLUMNS) -> str:
    """A Markdown table of the key numbers, one row per run (or per run and layer)."""
    heads = ["run", *(["layer"] if "layer" in frame and frame["layer"].nunique() > 1 else [])]
    header = heads + [h for _, h, _ in columns]
    rows = []
    for _, r in frame.iterrows():
        cells = [str(r[h]) for h in heads]
        for col, _, fmt in columns:
            v = r.get(col, float("nan"))
            ok = v is not None and not (isinstance(v, float) and not math.isfinite(v))
            cells.append(fmt.format(int(v) if fmt == "{:d}" else v) if ok else "—")
        rows.append(cells)
    widths = [max(len(header[j]), *(len(r[j]) for r in rows)) for j in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _damage_lines(analysis) -> list[str]:
    """What a salvaged analysis could not read, said before any number."""
    lines = []
    for src in analysis.sources:
        if src.damage:
            lines += [
                "",
                f"**Salvaged: `{src.label}` is damaged.** {len(src.damage)} chunk(s) could not "
                f"be read; analysed: {src.salvaged or 'every readable value'}.  Bad chunks:",
                "",
                *(f"- {d}" for d in src.damage[:20]),
                *([f"- ... and {len(src.damage) - 20} more"] if len(src.damage) > 20 else []),
            ]
    return lines


def _markdown(analysis) -> str:
    s = analysis.settings
    lines = [
        "# sgn_memory report",
        "",
        f"Inputs: {', '.join(f'`{src.label}`' for src in analysis.sources)}.",
        f"Settings: preset={s['preset']}, level={s['level']}, max_coords={s['max_coords']}, "
        f"seed={s['seed']}; baseline: {s['baseline']}.",
        *_damage_lines(analysis),
        "",
        "## Runs",
        "",
        format_table(analysis.runs),
        "",
        "## Layers",
        "",
        format_table(analysis.summary),
        "",
        "H - shuffled: mean over series of H (Whittle) minus the same estimator on a "
        "time-shuffled copy of the series (no memory); its 95% interval is in summary.json "
        "(`hurst_*_excess_ci`, series treated as independent).  Rejection fractions are after "
        "Benjamini-Hochberg at the level above; raw fractions are in summary.json.",
    ]
    if s["preset"] == "tan2021":
        lines += [
            "",
            "tan2021 preset: mean R/S H over series with 0.01 <= H <= 0.99 (the seed authors' "
            "statistic, reported 0.46 for ResNet-20 on CIFAR-10): "
            + ", ".join(
                f"{r['run']}: {r['tan2021_mean_hurst']:.3f}" for _, r in analysis.runs.iterrows()
            ),
        ]
    return "\n".join(lines) + "\n"


# ============================================================================================
# plots (matplotlib, Agg; each function draws one PNG and returns its file name or None)

_MAX_LAYERS = 8
_EXAMPLES = 3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    _pyplot().close(fig)
    return name


def _plot_hurst_histograms(analysis, folder: Path) -> str | None:
    plt = _pyplot()
    s = analysis.series
    groups = [
        (f"{run} / {layer}", g) for (run, layer), g in s.groupby(["run", "layer"], sort=False)
    ]
    if len(groups) > _MAX_LAYERS:
        groups = [(run, g) for run, g in s.groupby("run", sort=False)][:_MAX_LAYERS]
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, (label, g) in zip(axes.flat, groups, strict=False):
        h = g["hurst_whittle"].dropna()
        b = g["hurst_whittle_shuffled"].dropna()
        if h.empty and b.empty:  # every series of the layer excluded: say so, no empty axes
            ax.text(0.5, 0.5, f"no series analysed\n({len(g)} excluded)", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)  # fmt: skip
            ax.set_yticks([])
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("H")
            continue
        ax.hist(b, bins=bins, alpha=0.5, color="grey", label="shuffled (no memory)")
        ax.hist(h, bins=bins, alpha=0.7, color="C0", label="H (Whittle)")
        if len(h):
            ax.axvline(h.median(), color="C0", lw=1)
        ax.axvline(0.5, color="k", lw=0.6, ls=":")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("H")
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    drawn = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if drawn:
        drawn[0].legend(fontsize=7)
    return _save(fig, folder, "hurst_histograms.png")


def _examples(analysis):
    """(label, series) of a few analysed series of the first run, one per layer first (for the
    per-series plots); constant or non-finite series are skipped."""
    src = analysis.sources[0]
    first = analysis.series[analysis.series["run"] == analysis.series["run"].iloc[0]]
    picks = first.groupby("layer", sort=False).head(1)
    picks = pd.concat([picks, first.drop(picks.index)]).head(4 * _EXAMPLES)
    x = src.read(picks["column"].to_numpy()).T
    out = []
    for j in range(len(picks)):
        if np.isfinite(x[j]).all() and np.ptp(x[j]) > 0:
            out.append((f"{picks['layer'].iloc[j]}: {picks['name'].iloc[j]}", x[j]))
        if len(out) == _EXAMPLES:
            break
    return out


def _plot_loglog(analysis, folder: Path) -> str | None:
    from . import hurst

    examples = _examples(analysis)
    if not examples:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for (label, x), color in zip(examples, ("C0", "C1", "C2"), strict=False):
        for ax, est in ((axes[0], hurst.hurst_rs(x)), (axes[1], hurst.hurst_dfa(x))):
            sc, fl = est.scales, est.fluctuation
            ax.loglog(sc, fl, "o", ms=3, color=color, label=f"{label}: H = {float(est.hurst):.3f}")
            line = np.exp(float(est.intercept)) * sc ** float(est.hurst)
            if est.method == "rs-corrected":
                line = line * hurst.expected_rs(sc) / sc**0.5
            ax.loglog(sc, line, "-", lw=0.8, color=color)
    axes[0].set_title("R/S (corrected fit)", fontsize=9)
    axes[1].set_title("DFA-1", fontsize=9)
    for ax in axes:
        ax.set_xlabel("window size")
        ax.legend(fontsize=6)
    return _save(fig, folder, "loglog_fits.png")


def _plot_tails_and_qq(analysis, folder: Path) -> list[str]:
    from .tails import tail_diagnostics

    examples = _examples(analysis)[:2]  # two, so the plot stays readable
    if not examples:
        return []
    plt = _pyplot()
    fig_t, ax_t = plt.subplots(figsize=(5, 3.8))
    fig_q, ax_q = plt.subplots(figsize=(5, 3.8))
    for (label, x), color in zip(examples, ("C0", "C1"), strict=False):
        d = tail_diagnostics(x)
        tail = d.survival <= 0.5  # the tail only
        u = d.threshold[tail]
        ax_t.loglog(u, d.survival[tail], ".", ms=3, color=color, label=f"{label} (data)")
        ax_t.loglog(
            u,
            d.stable_survival[tail],
            "-",
            color=color,
            label=f"stable fit, alpha = {float(d.fit.alpha):.2f}",
        )
        ax_t.loglog(u, d.gaussian_survival[tail], ":", color=color, label="Gaussian fit")
        ax_q.plot(d.qq_theoretical, d.qq_sample, ".", ms=3, color=color, label=label)
    ax_t.set_ylim(0.5 / len(examples[0][1]), 1.0)
    ax_t.set_xlabel("|u - loc|")
    ax_t.set_ylabel("P(|U - loc| > u)")
    ax_t.legend(fontsize=6)
    lim = ax_q.get_xlim()
    ax_q.plot(lim, lim, "k-", lw=0.6)
    ax_q.set_xlabel("normal quantile")
    ax_q.set_ylabel("standardised sample quantile")
    ax_q.legend(fontsize=7)
    return [_save(fig_t, folder, "tail_loglog.png"), _save(fig_q, folder, "qq_gaussian.png")]


def _plot_acf(analysis, folder: Path) -> str | None:
    plt = _pyplot()
    s = analysis.series
    lags = [c for c in s.columns if c.startswith("acf_")]
    if not lags:
        return None
    k = np.arange(1, len(lags) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for run, g in s.groupby("run", sort=False):
        v = g[lags].to_numpy()
        med = np.nanmedian(v, axis=0)
        lo, hi = np.nanpercentile(v, [25, 75], axis=0)
        ax.plot(k, med, "o-", ms=3, label=run)
        ax.fill_between(k, lo, hi, alpha=0.2)
    n = analysis.sources[0].n_steps
    ax.axhspan(-1.96 / math.sqrt(n), 1.96 / math.sqrt(n), color="grey", alpha=0.15)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_ylabel("autocorrelation (median, IQR)")
    ax.legend(fontsize=7)
    return _save(fig, folder, "acf.png")


def _plot_over_training(analysis, folder: Path) -> str | None:
    w = analysis.over_training
    if w is None or w.empty:
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for run, g in w.groupby("run", sort=False):
        mid = (g["start_step"] + g["end_step"]) / 2
        a1.plot(mid, g["hurst_whittle_median"], "o-", ms=3, label=run)
        a1.fill_between(mid, g["hurst_whittle_q25"], g["hurst_whittle_q75"], alpha=0.2)
        a2.plot(mid, g["tail_index_median"], "o-", ms=3, label=run)
    a1.axhline(0.5, color="k", lw=0.5, ls=":")
    a1.set_ylabel("H (Whittle), median and IQR")
    a2.set_ylabel("tail index (Mohammadi), median")
    for ax in (a1, a2):
        ax.set_xlabel("training step (window centre)")
        ax.legend(fontsize=7)
    return _save(fig, folder, "over_training.png")


def _plot_b_simple(analysis, folder: Path) -> str | None:
    p = analysis.per_step
    if p is None or p.empty or "b_simple" not in p or not np.isfinite(p["b_simple"]).any():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for run, g in p.groupby("run", sort=False):
        ok = np.isfinite(g["b_simple"])
        ax.plot(g["step"][ok], g["b_simple"][ok], lw=0.8, label=run)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("B_simple = B |u|^2 / |grad L|^2")
    ax.legend(fontsize=7)
    return _save(fig, folder, "b_simple.png")


def _plot_comparison(analysis, folder: Path) -> str | None:
    r = analysis.runs
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(r) + 2), 3.4))
    x = np.arange(len(r))
    for off, key, label in (
        (-0.25, "rs", "R/S"),
        (0.0, "dfa", "DFA"),
        (0.25, "whittle", "Whittle"),
    ):
        ex = r[f"hurst_{key}_excess"].to_numpy(dtype=float)
        ci = np.array(
            [c if c is not None else [np.nan, np.nan] for c in r[f"hurst_{key}_excess_ci"]]
        )
        err = np.abs(ci.T - ex)
        ax.bar(x + off, ex, width=0.25, yerr=err, capsize=3, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, r["run"], rotation=20, fontsize=8)
    ax.set_ylabel("H minus shuffled baseline (95% CI)")
    ax.legend(fontsize=7)
    return _save(fig, folder, "comparison.png")


def make_plots(analysis, folder: Path) -> list[str]:
    """Every plot the report shows; returns the PNG file names written."""
    names = [
        _plot_hurst_histograms(analysis, folder),
        _plot_loglog(analysis, folder),
        *_plot_tails_and_qq(analysis, folder),
        _plot_acf(analysis, folder),
        _plot_over_training(analysis, folder),
        _plot_b_simple(analysis, folder),
        _plot_comparison(analysis, folder),
    ]
    return [n for n in names if n]


_CAPTIONS = {
    "hurst_histograms.png": "H (Whittle) per series by layer, next to the same estimator on "
    "time-shuffled copies (the no-memory baseline).",
    "loglog_fits.png": "Log-log fits of R/S and DFA for a few series.",
    "tail_loglog.png": "Empirical tail of |u - loc| with the fitted stable and Gaussian tails.",
    "qq_gaussian.png": "Quantiles of standardised series against the normal law.",
    "acf.png": "Autocorrelation by lag (median and IQR over series; band: +-1.96/sqrt(n)).",
    "over_training.png": "H and tail index in windows of training steps.",
    "b_simple.png": "Gradient noise scale B_simple over training.",
    "comparison.png": "H minus its shuffled baseline, per run and estimator.",
}


def _html(analysis, folder: Path, plots: list[str]) -> str:
    import base64
    import html

    def table(frame) -> str:
        cols = ["run", "layer", *[c for c, _, _ in KEY_COLUMNS if c in frame]]
        return frame[[c for c in cols if c in frame]].to_html(
            index=False, float_format=lambda v: f"{v:.3f}", na_rep="—", border=0
        )

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>sgn_memory report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>sgn_memory report</h1>",
        "<p>Inputs: " + ", ".join(html.escape(s.label) for s in analysis.sources) + "</p>",
        *(
            f"<p><strong>Salvaged: {html.escape(s.label)} is damaged.</strong> "
            f"{len(s.damage)} chunk(s) could not be read; analysed: "
            f"{html.escape(s.salvaged or 'every readable value')}. The bad chunks are listed "
            "in summary.json.</p>"
            for s in analysis.sources
            if s.damage
        ),
        "<h2>Runs</h2>",
        table(analysis.runs),
        "<h2>Layers</h2>",
        table(analysis.summary),
    ]
    for name in plots:
        data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
        parts += [
            f"<h3>{html.escape(name)}</h3><p>{html.escape(_CAPTIONS.get(name, ''))}</p>",
            f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


MARKER = ".sgn-report"  # in every report folder: what --overwrite may replace


_REPORT_FILES = frozenset({"summary.json", "series.csv", "report.md", "report.html", *_CAPTIONS})


def _is_legacy_report(path: Path) -> bool:
    """A report of a release before the marker: only our file names, and our summary.json."""
    try:
        names = {e.name for e in os.scandir(path)}
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        names <= _REPORT_FILES
        and isinstance(summary, dict)
        and "sgn_memory" in summary
        and "schema_version" in summary
    )


def _is_report(path: Path) -> bool:
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return _is_legacy_report(path)
    return isinstance(meta, dict) and meta.get("format") == "sgn_memory.report"


def _foreign_files(path: Path) -> list[str]:
    """Entries of a report folder that its marker does not list (what a user put there)."""
    try:
        ours = set(json.loads((path / MARKER).read_text()).get("files", []))
    except (OSError, ValueError, AttributeError):
        ours = set(_REPORT_FILES)  # a report from before the marker: our file names only
    ours.add(MARKER)
    return sorted(e.name for e in os.scandir(path) if e.name not in ours)


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or b in a.parents


def check_out(out_dir, *, overwrite: bool = False, inputs=()) -> Path:
    """Check that a report can be written at ``out_dir`` before any work; returns its path.

    ``--overwrite`` replaces only an earlier report of ours (recognised by the marker file
    ``.sgn-report`` written in every report): never an input, never a folder holding an input
    or inside one, never a directory that is not a report, never a file.  The parent folder
    must exist and be writable.  Raises :class:`~sgn_memory.errors.UsageError` (one sentence).
    """
    from .errors import UsageError

    out = Path(out_dir)
    target = out.resolve()
    for item in inputs:
        if isinstance(item, str | os.PathLike):
            src = Path(item).resolve()
            if _inside(target, src) or _inside(src, target):
                raise UsageError(
                    f"--out {out} would overwrite or sit inside the input {item}; choose a "
                    "report folder apart from the inputs."
                )
    if out.is_symlink():
        raise UsageError(
            f"--out {out} is a symbolic link; give the folder itself (a link is never replaced)."
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a report folder; choose another --out.")
    if out.exists():
        if not overwrite:
            raise UsageError(
                f"--out {out} already exists; choose another --out or pass --overwrite."
            )
        if not _is_report(out):
            raise UsageError(
                f"--out {out} is a folder that is not a report of sgn-analyze (it has no "
                f"{MARKER} marker); --overwrite replaces only earlier reports."
            )
        foreign = _foreign_files(out)
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise UsageError(
                f"--out {out} is an earlier report but also holds {len(foreign)} file(s) "
                f"sgn-analyze did not write ({shown}); move them out or choose another --out."
            )
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out}: the folder {parent} does not exist.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {parent} is not writable.")
    return out


def write_report(
    analysis, out_dir, *, overwrite: bool = False, plots: bool = True, inputs=None
) -> Path:
    """Write the report folder atomically (temporary sibling, then rename); returns its path.

    The folder is checked first (:func:`check_out`, against ``inputs`` or the analysis'
    sources); an existing report is replaced only once the new one is complete.  A failure
    while writing (a full disk) removes the partial new folder and leaves the old one as it
    was; it is raised as :class:`~sgn_memory.SgnMemoryError` naming what happened.
    """
    if inputs is None:
        inputs = [s.label for s in analysis.sources if s.kind != "array"]
    out = check_out(out_dir, overwrite=overwrite, inputs=inputs)
    target = out.resolve()
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    tmp = target.parent / f".{target.name}.tmp-{tag}"
    try:
        tmp.mkdir()
        (tmp / "summary.json").write_text(
            json.dumps(summary_dict(analysis), indent=2, allow_nan=False) + "\n"
        )
        analysis.series.to_csv(tmp / "series.csv", index=False, float_format="%.6g")
        names = make_plots(analysis, tmp) if plots else []
        (tmp / "report.md").write_text(
            _markdown(analysis) + "".join(f"\n![{n}]({n})\n" for n in names)
        )
        (tmp / "report.html").write_text(_html(analysis, tmp, names))
        marker = {
            "format": "sgn_memory.report",
            "schema_version": REPORT_SCHEMA_VERSION,
            "files": sorted(p.name for p in tmp.iterdir()),  # what --overwrite may replace
        }
        (tmp / MARKER).write_text(json.dumps(marker) + "\n")  # last: a whole report
        if target.exists():
            if not _is_report(target):  # checked again: it may have changed during the analysis
                raise SgnMemoryError(f"{out} is no longer a report folder; nothing was replaced.")
            old = target.parent / f".{target.name}.old-{tag}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        why = err.strerror or str(err)
        raise SgnMemoryError(
            f"could not write the report to {out} ({why}); nothing was written"
            + (" and the earlier report is unchanged." if target.exists() else ".")
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
