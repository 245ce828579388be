"""Write an :class:`~sgn_memory.analyze.Analysis` to a report folder.

The folder holds ``summary.json`` (versioned schema, NaN written as null), ``series.csv`` (one
row per analysed series) and ``report.md``.  It is written to a temporary sibling folder and
renamed into place, so an interrupted run never leaves a half report that looks whole.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SgnMemoryError

REPORT_SCHEMA_VERSION = 1

# the columns of the short table (stdout and report.md): (column, header, format)
KEY_COLUMNS = (
    ("n_series", "series", "{:d}"),
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
                {"label": s.label, "kind": s.kind, "n_steps": s.n_steps, "n_series": s.n_series}
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


def _markdown(analysis) -> str:
    s = analysis.settings
    lines = [
        "# sgn_memory report",
        "",
        f"Inputs: {', '.join(f'`{src.label}`' for src in analysis.sources)}.",
        f"Settings: preset={s['preset']}, level={s['level']}, max_coords={s['max_coords']}, "
        f"seed={s['seed']}; baseline: {s['baseline']}.",
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


def write_report(analysis, out_dir, *, overwrite: bool = False) -> Path:
    """Write the report folder atomically (temporary sibling, then rename); returns its path."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise SgnMemoryError(f"{out}: already exists; choose another --out or pass --overwrite.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / "summary.json").write_text(
            json.dumps(summary_dict(analysis), indent=2, allow_nan=False) + "\n"
        )
        analysis.series.to_csv(tmp / "series.csv", index=False, float_format="%.6g")
        (tmp / "report.md").write_text(_markdown(analysis))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
