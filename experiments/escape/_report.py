"""The Markdown: one section per part (table, what was measured, the verdict on the claim) and
``escape.md``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats

from ._config import PARTS


# ============================================================================ tables, verdicts
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    v = float(v)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if 1000 <= abs(v) < 1e6 and digits >= 3:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def _pct(x) -> str:
    x = float(x)
    if math.isnan(x):
        return "—"
    if 0 < x < 0.01:
        return "<1%"
    if 0.99 < x < 1:
        return ">99%"
    return f"{x:.0%}"


def _mean_cell(r) -> str:
    bound = "≥ " if bool(r["mean_restricted"]) else ""
    return f"{bound}{_fmt(r['km_mean'])} [{_fmt(r['km_mean_low'])}, {_fmt(r['km_mean_high'])}]"


def _median_cell(r) -> str:
    if not math.isfinite(r["km_median"]):
        return f"> {_fmt(r['horizon'])}"
    return f"{_fmt(r['km_median'])} [{_fmt(r['km_median_low'])}, {_fmt(r['km_median_high'])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _compare(a, b, confidence: float) -> int:
    """+1 if restricted mean a > b, -1 if a < b (two-sided z test at ``confidence``), else 0.

    Both restricted to the same horizon; the standard errors are Klein-Moeschberger's.  Runs of
    two configurations share minibatch streams, which makes the independent-samples test
    conservative.
    """
    diff = float(a["km_mean"]) - float(b["km_mean"])
    se = math.hypot(float(a["km_mean_se"]), float(b["km_mean_se"]))
    z = scipy.special.ndtri(0.5 + confidence / 2)
    if se == 0:
        return 0 if diff == 0 else int(np.sign(diff))
    return int(np.sign(diff)) if abs(diff) > z * se else 0


def _trend(h: np.ndarray, rows: list, confidence: float) -> tuple[str, float]:
    """Direction of the restricted mean along H: (words, Spearman correlation)."""
    means = np.array([float(r["km_mean"]) for r in rows])
    rho = float(scipy.stats.spearmanr(h, means).statistic) if np.ptp(means) > 0 else 0.0
    ends = _compare(rows[-1], rows[0], confidence)
    if ends > 0 and rho > 0:
        return "longer with H", rho
    if ends < 0 and rho < 0:
        return "shorter with H", rho
    return "no clear trend", rho


def _sde_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["sde"]
    conf = settings["confidence"]
    lines = ["## 1. Escape of the fBM-driven SDE from a flat and a sharp well", ""]
    horizon = s["n_steps"] * s["dt"]
    lines.append(
        f"dX = -U'(X) dt + sigma dB^H in `DoubleWell` wells of equal depth {s['depth']:g} (U'' = "
        f"{s['flat']:g} flat, {s['sharp']:g} sharp; |U''| = {s['saddle_curvature']:g} at the "
        f"saddle), sigma = {s['sigma']:g}, dt = {s['dt']:g}, {s['n_paths']} paths per cell from "
        f"the bottom of the well, escape = first touch of the {s['target']}, censored at t = "
        f"{horizon:g} ({s['n_steps']} steps) in every cell.  KM mean: area under the "
        "Kaplan-Meier curve up to that horizon ('≥': some paths censored, so a lower bound of "
        "E[T]); exp.-law mean: time at risk / escapes (extrapolates censored paths if escape is "
        "memoryless); approximations: `mean_escape_time_approx` (quasi-stationary, "
        "time-dependent = the seed paper's heuristic; ∞: it predicts that a fraction never "
        "escapes)."
    )
    verdicts = []
    for scaling in s["scalings"]:
        for well in ("flat", "sharp"):
            part = frame[(frame.scaling == scaling) & (frame.well == well)].sort_values("hurst")
            if len(part) < 2:
                continue
            records = part.to_dict("records")
            words, rho = _trend(part.hurst.to_numpy(), records, conf)
            lo, hi = records[0], records[-1]
            verdicts.append(
                (
                    scaling,
                    well,
                    words,
                    f"{_fmt(lo['km_mean'])} at H = {lo['hurst']:g} → "
                    f"{_fmt(hi['km_mean'])} at H = {hi['hurst']:g}, Spearman {rho:+.2f}",
                )
            )
    if verdicts:
        lines += ["", "Direction of the H effect (restricted means, same horizon everywhere):", ""]
        for scaling, well, words, detail in verdicts:
            agree = {"longer with H": "agrees with", "shorter with H": "contradicts"}.get(
                words, "does not decide"
            )
            trend = {
                "longer with H": "escape takes longer as H grows",
                "shorter with H": "escape comes sooner as H grows",
            }.get(words, "no clear trend of the escape time with H")
            lines.append(
                f"- `{scaling}` scaling, {well} well: {trend} ({detail}); this {agree} the "
                "claim that the iterate stays longer as H grows."
            )
        flat = [v for v in verdicts if v[1] == "flat"]
        agree_flat = [v[0] for v in flat if v[2] == "longer with H"]
        lines += [
            "",
            "**Verdict on Tan et al.'s claim (longer stay in flat minima for larger H):** "
            + (
                f"supported in the flat well under {', '.join(agree_flat)} scaling only."
                if agree_flat
                else "not supported in this model: in the flat well no noise scaling makes "
                "escape slower as H grows."
            )
            + "  Which way H acts depends on the scaling and the curvature: under `fbm` scaling "
            "the noise a well feels over its relaxation time 1/U'' is ~sigma² (1/U'')^(2H), which "
            "grows with H in a flat well (1/U'' > 1) and shrinks in a sharp one; under `per-step` "
            "scaling the continuous-time noise level sigma dt^(1/2-H) grows with H everywhere.",
        ]
    header = [
        "scaling",
        "well",
        "H",
        "sigma_fbm",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
        "exp.-law mean",
        "approx. QS",
        "approx. TD",
    ]
    rows = [
        [
            r["scaling"],
            f"{r['well']} (U''={r['curvature']:g})",
            f"{r['hurst']:g}",
            _fmt(r["sigma_fbm"]),
            _pct(r["censored_fraction"]),
            _mean_cell(r),
            _median_cell(r),
            _fmt(r["exp_mean"]),
            _fmt(r["approx_qs_mean"]),
            _fmt(r["approx_td_mean"]),
        ]
        for r in frame.to_dict("records")
    ]
    lines += ["", _table(header, rows), "", "![escape_sde](plots/escape_sde.png)", ""]
    return "\n".join(lines)


def _sgd_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["sgd"]
    conf = settings["confidence"]
    lines = ["## 2. Escape of SGD from a sharp and a flat minimum", ""]
    mins = frame.drop_duplicates("minimum").set_index("minimum")
    desc = "; ".join(
        f"{name}: {mins.loc[name, 'found_by']}, L_min = {_fmt(mins.loc[name, 'loss_min'], 4)}, "
        f"|∇L| = {_fmt(mins.loc[name, 'grad_norm_min'], 2)}, λ_max = "
        f"{_fmt(mins.loc[name, 'lambda_max'], 3)}"
        for name in mins.index
    )
    lines.append(
        f"`{s['model']}` {s['model_kwargs']} on `{s['dataset']}` {s['dataset_kwargs']}, mean "
        f"squared error.  Minima ({desc}).  From each minimum and each (B, lr), with "
        f"`{s['optimizer']}`: one {s['noise_steps']}-step run with the NoiseCollector (exact "
        "reference every step) gives the noise's H (median over the recorded coordinates; "
        "'shuf.' = the same estimator on time-shuffled series, i.e. the no-memory value; "
        "'in basin' = fraction of its loss checks inside the basin: a crossing of the level is "
        "often temporary, so it can stay high although the first passage comes early), and "
        f"{s['runs']} runs (run r on minibatch stream r in every cell) give the escape time: "
        f"iterations until the full-data loss exceeds L_min + {s['delta']:g}, checked every "
        f"{s['check_every']} steps, censored at {s['max_steps']}.  lr·λ_max ≥ 2: the minimum is "
        "linearly unstable for that step size (gradient descent itself leaves it)."
    )
    # (i) flat vs sharp at equal (B, lr); (ii) escape against H
    pairs, dh, ratio = [], [], []
    for (b, lr), g in frame.groupby(["batch_size", "lr"], sort=True):
        rec = {r["minimum"]: r for r in g.to_dict("records")}
        if {"flat", "sharp"} <= set(rec):
            pairs.append(((b, lr), _compare(rec["flat"], rec["sharp"], conf)))
            dh.append(abs(rec["flat"]["hurst_whittle"] - rec["sharp"]["hurst_whittle"]))
            ratio.append(rec["flat"]["km_mean"] / rec["sharp"]["km_mean"])
    longer = sum(1 for _, c in pairs if c > 0)
    shorter = sum(1 for _, c in pairs if c < 0)
    censored_both = frame.groupby(["batch_size", "lr"]).mean_restricted.all().sum()
    h = frame["hurst_whittle"].to_numpy(dtype=float)
    m = frame["km_mean"].to_numpy(dtype=float)
    ok = np.isfinite(h) & np.isfinite(m)
    rho_all = (
        float(scipy.stats.spearmanr(h[ok], m[ok]).statistic)
        if ok.sum() >= 3 and np.ptp(m[ok]) > 0 and np.ptp(h[ok]) > 0
        else math.nan
    )
    within = []
    for name, g in frame.groupby("minimum", sort=False):
        hh, mm = g["hurst_whittle"].to_numpy(float), g["km_mean"].to_numpy(float)
        okk = np.isfinite(hh) & np.isfinite(mm)
        if okk.sum() >= 3 and np.ptp(mm[okk]) > 0 and np.ptp(hh[okk]) > 0:
            within.append(f"{name} {scipy.stats.spearmanr(hh[okk], mm[okk]).statistic:+.2f}")
    h_range = (np.nanmin(h), np.nanmax(h)) if np.isfinite(h).any() else (math.nan, math.nan)
    base = frame["hurst_whittle_shuffled"].to_numpy(float)
    excess = h - base
    if np.isfinite(excess).any() and np.nanmax(excess) < 0:
        sign = ", below the baseline in every cell (anti-persistent noise)"
    elif np.isfinite(excess).any() and np.nanmin(excess) > 0:
        sign = ", above the baseline in every cell (persistent noise)"
    else:
        sign = ""
    lines += [
        "",
        f"**Flat against sharp:** at equal (B, lr) SGD stays longer in the flat minimum in "
        f"{longer} of {len(pairs)} cells and shorter in {shorter} (restricted means, z test at "
        f"{conf:.0%}; {int(censored_both)} cell(s) have censored runs from both minima)."
        f"  **Against H:** the noise's Whittle H ranges over [{_fmt(h_range[0])}, "
        f"{_fmt(h_range[1])}] (shuffled baseline ≈ {_fmt(np.nanmedian(base))}){sign}; Spearman "
        f"correlation of H with the escape time over all cells {_fmt(rho_all, 2)}"
        + (f", within a minimum {', '.join(within)}" if within else "")
        + (
            f"; at equal (B, lr) the two minima's H differ by at most {_fmt(np.nanmax(dh), 2)}, "
            f"while flat/sharp ratios of the mean escape time range over "
            f"[{_fmt(np.nanmin(ratio), 3)}, {_fmt(np.nanmax(ratio), 3)}] (censored means are "
            "lower bounds)"
            if pairs and np.isfinite(dh).any()
            else ""
        )
        + ".  "
        + _sgd_verdict(longer, shorter, len(pairs), rho_all)
        + "  The cells differ in B and lr, which move both H and the escape time, so a "
        "correlation across cells is not an effect of H on escape.",
    ]
    header = [
        "minimum",
        "λ_max",
        "B",
        "lr",
        "lr·λ_max",
        "H Whittle (shuf.)",
        "H DFA (shuf.)",
        "in basin",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
    ]
    rows = [
        [
            r["minimum"],
            _fmt(r["lambda_max"]),
            str(int(r["batch_size"])),
            f"{r['lr']:g}",
            _fmt(r["lr_lambda"], 2),
            f"{_fmt(r['hurst_whittle'])} ({_fmt(r['hurst_whittle_shuffled'])})",
            f"{_fmt(r['hurst_dfa'])} ({_fmt(r['hurst_dfa_shuffled'])})",
            _pct(r["noise_in_basin"]),
            _pct(r["censored_fraction"]),
            _mean_cell(r),
            _median_cell(r),
        ]
        for r in frame.to_dict("records")
    ]
    lines += ["", _table(header, rows), "", "![escape_sgd_hurst](plots/escape_sgd_hurst.png)", ""]
    return "\n".join(lines)


def _sgd_verdict(longer: int, shorter: int, n: int, rho: float) -> str:
    if not n:
        flat = "flat and sharp could not be compared"
    elif longer > shorter:
        flat = "SGD stays longer in the flat minimum"
    elif shorter > longer:
        flat = "SGD leaves the flat minimum sooner than the sharp one"
    else:
        flat = "no significant difference between the flat and the sharp minimum"
    if not math.isfinite(rho):
        mem = "the link to H cannot be read off these cells"
    elif rho > 0.3:
        mem = "cells with larger H tend to keep SGD longer, as the claim has it"
    elif rho < -0.3:
        mem = "cells with larger H tend to lose SGD sooner, against the claim"
    else:
        mem = "escape time and H are not clearly related"
    return f"**Verdict:** {flat}; {mem}."


def _saddle_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["saddle"]
    conf = settings["confidence"]
    r0 = frame.iloc[0]
    lines = ["## 3. Escape from a strict saddle: SGD, SAM, StableSAM", ""]
    lines.append(
        f"Two-layer {s['activation']} network without biases (width {s['width']}) on "
        f"`{s['dataset']}` {s['dataset_kwargs']}, mean squared error.  At w = 0: loss "
        f"{_fmt(r0['loss_saddle'], 4)}; dense Hessian eigenvalues in "
        f"[{_fmt(r0['hessian_lambda_min'], 4)}, {_fmt(r0['hessian_lambda_max'], 4)}], "
        f"{int(r0['hessian_n_negative'])} of {int(r0['hessian_n_params'])} negative (Lanczos, "
        f"`which='LA'`: λ_max {_fmt(r0['lanczos_lambda_max'], 4)}, smallest Ritz value "
        f"{_fmt(r0['lanczos_min_ritz'], 4)}): a strict saddle.  Every run starts at the same "
        f"w0 = w = 0 + N(0, {s['perturbation']:g}²) per weight (loss {_fmt(r0['start_loss'], 4)});"
        f" lr = {s['lr']:g}; {s['runs']} runs per configuration (run r on minibatch stream r); "
        f"escape = first check with loss ≤ L(0) - {s['delta']:g}, checked every "
        f"{s['check_every']} step(s), censored at {s['max_steps']}.  SAM-type optimizers use "
        "SGD (momentum 0) or heavy ball (0.9) as base."
    )
    recs = frame.to_dict("records")
    sgd_rows = {(r["momentum"], r["batch_size"]): r for r in recs if r["optimizer"] == "sgd"}
    slower = faster = same = 0
    stuck = []
    ratios: dict[tuple, float] = {}
    bounds: set[tuple] = set()  # ratios that are lower bounds (SAM censored, SGD not)
    for r in recs:
        if r["optimizer"] == "sgd":
            continue
        ref = sgd_rows.get((r["momentum"], r["batch_size"]))
        if ref is None:
            continue
        c = _compare(r, ref, conf)
        slower += c > 0
        faster += c < 0
        same += c == 0
        key = (r["optimizer"], r["rho"], r["momentum"], r["batch_size"])
        ratios[key] = float(r["km_mean"]) / float(ref["km_mean"])
        if bool(r["mean_restricted"]) and not bool(ref["mean_restricted"]):
            bounds.add(key)
        if r["censored_fraction"] == 1.0:
            stuck.append(
                f"{r['optimizer']} rho={r['rho']:g} momentum {r['momentum']:g} B={r['batch_size']}"
            )
    n = slower + faster + same
    by_rho = []
    for rho in sorted({r["rho"] for r in recs if r["optimizer"] != "sgd"}):
        rs = [v for k, v in ratios.items() if k[1] == rho]
        by_rho.append(f"rho = {rho:g}: median ratio {_fmt(np.median(rs), 3)}")
    mitig_text, mitig = _mitigation(frame, conf)
    helps = [f for f, (h, hurt, _) in mitig.items() if h > hurt]
    verdict = (
        f"**SAM against SGD:** slower to escape in {slower} of {n} SAM-type configurations, "
        f"faster in {faster}, no significant difference in {same} (restricted means at equal "
        f"momentum and B, z test at {conf:.0%}; SAM-type mean / SGD mean by radius: "
        f"{'; '.join(by_rho)})"
        + (f"; never escaped within the horizon: {', '.join(stuck)}" if stuck else "")
        + ".  "
        + mitig_text
        + "  **Verdict on Kim et al.:** "
        + (
            "SAM-type optimizers escape this saddle more slowly than SGD"
            + (" in every configuration" if slower == n else " in most configurations")
            if n and slower > n / 2
            else "SAM-type optimizers do not escape this saddle more slowly than SGD in most "
            "configurations"
        )
        + "; "
        + (
            "momentum and batch size were not varied, so their effect is not tested"
            if not mitig
            else f"{' and '.join(helps)} mitigate{'s' if len(helps) == 1 else ''} the slowdown"
            if helps
            else "neither momentum nor the larger batch mitigates the slowdown here"
        )
        + ".  (Why a radius matters: near w = 0 SAM's ascent step rho g/|g| has length rho "
        "however small g is, and the gradient at w + e then points back to the saddle along "
        "the squared curvature, so the saddle attracts SAM until |w| is comparable with rho.)"
    )
    lines += ["", verdict]
    header = [
        "optimizer",
        "rho",
        "momentum",
        "B",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
        "mean / SGD's",
    ]
    rows = []
    for r in recs:
        key = (r["optimizer"], r["rho"], r["momentum"], r["batch_size"])
        rows.append(
            [
                r["optimizer"],
                _fmt(r["rho"]),
                f"{r['momentum']:g}",
                str(int(r["batch_size"])),
                _pct(r["censored_fraction"]),
                _mean_cell(r),
                _median_cell(r),
                ("≥ " if key in bounds else "") + _fmt(ratios.get(key), 3)
                if r["optimizer"] != "sgd"
                else "1",
            ]
        )
    lines += [
        "",
        _table(header, rows),
        "",
        "![escape_saddle_survival](plots/escape_saddle_survival.png)",
        "",
    ]
    return "\n".join(lines)


def _mitigation(frame: pd.DataFrame, conf: float) -> tuple[str, dict]:
    """Do momentum and a larger batch shorten SAM's escape?  Counted over SAM-type rows.

    Returns the sentence and ``{"momentum" | "the larger batch": (shortens, lengthens, pairs)}``.
    """
    sam = frame[frame.optimizer != "sgd"]
    out, counts = [], {}
    for factor, others in (("momentum", "batch_size"), ("batch_size", "momentum")):
        values = sorted(sam[factor].unique())
        if len(values) < 2:
            continue
        lo, hi = values[0], values[-1]
        helps = hurts = total = 0
        for _, g in sam.groupby(["optimizer", "rho", others], dropna=False):
            a = g[g[factor] == hi].to_dict("records")
            b = g[g[factor] == lo].to_dict("records")
            if a and b:
                c = _compare(a[0], b[0], conf)
                helps += c < 0
                hurts += c > 0
                total += 1
        label = "momentum" if factor == "momentum" else "the larger batch"
        what = f"{hi:g} instead of {lo:g}" if factor == "momentum" else f"B={hi:g} vs B={lo:g}"
        counts[label] = (helps, hurts, total)
        out.append(
            f"{label} ({what}) shortens SAM-type escape in {helps} of {total} comparisons and "
            f"lengthens it in {hurts}"
        )
    if not out:
        return "", counts
    return "**Mitigation:** " + "; ".join(out) + ".", counts


_SECTIONS = {"sde": _sde_section, "sgd": _sgd_section, "saddle": _saddle_section}


def _summary(settings: dict, results: dict, failures: dict) -> str:
    lines = [
        "# Escape times: SDE model, SGD at sharp and flat minima, SAM at a saddle",
        "",
        "Claims tested: (1) Tan, Zhang & Liu (arXiv:2105.02062): SGD stays longer in flat minima "
        "when the Hurst exponent H of its noise is larger; (2) Kim et al. (arXiv:2301.06308): "
        "SAM escapes saddle points more slowly than SGD, and momentum and the batch size "
        "mitigate this.  Escape statistics: Kaplan-Meier over independent runs "
        "(`sgn_memory.escape_times`); every mean is restricted to the horizon, '≥' where runs "
        f"were censored; intervals at {settings['confidence']:.0%}.  Settings: "
        "`escape_settings.json`; per-run times: `*_escape_times.csv`.",
        "",
    ]
    for part in PARTS:
        if part not in settings["parts"]:
            continue
        if part in results:
            lines.append(_SECTIONS[part](results[part][0], settings))
        else:
            reason = failures.get(part, "not run")
            lines += [f"## {part}", "", f"No result for these settings ({reason}).", ""]
    return "\n".join(lines)
