"""The numbers behind ``experiments/FINDINGS.md``, claim by claim, from a finished sweep.

    python -m experiments.findings runs/paper --out experiments/results/paper

Reads every run of the sweep (``result.json``, the per-run ``report/series.csv`` and the stores),
copies the sweep's tables into ``--out`` and writes ``claims.md`` / ``claims.json``:

1. Gaussian?  Fraction of recorded coordinates whose noise series the Shapiro-Wilk and
   D'Agostino-Pearson tests reject at 5% after Benjamini-Hochberg, per protocol, over all runs.
2. alpha-stable?  The median stable alpha (S0 fit) and tail index, and the fraction rejected by
   :func:`sgn_memory.stable_test` (characteristic-function distance, parametric bootstrap; run
   here on ``--stable-series`` of the series the analysis used, in the runs of the
   ``--stable-seeds`` (it costs ~10 s per store), BH at 5%).
3. Memory beyond the no-memory baseline?  H by Whittle, DFA and corrected R/S minus the same
   estimator on shuffled copies (per run: median over coordinates; the 95% interval of the
   Whittle excess from the analysis), the seed authors' R/S statistic, and the fraction of
   coordinates Lo's modified R/S test rejects (BH).
4. Does H differ between SGD and SAM / StableSAM?  In the ``strategies`` group, per weight decay:
   the Whittle H excess of each optimizer minus SGD's, paired by seed (same data order and
   initialisation), with a paired t interval over seeds.
5. Larger H with flatter minima?  Spearman's rank correlation between H (Whittle, median) and the
   top Hessian eigenvalue across runs, per protocol, with its permutation-free p-value (scipy).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .tables import collect_results


def _stable_rejections(run_dir: Path, store: str, max_series: int, seed: int) -> float:
    """Fraction of series the stable test rejects at 5% after BH (NaN when not computable)."""
    import sgn_memory as sgn
    from sgn_memory.store import NoiseStore

    series = pd.read_csv(run_dir / "report" / "series.csv", usecols=["run", "column"])
    run_name = Path(store).name
    columns = np.sort(series.loc[series["run"] == run_name, "column"].to_numpy(dtype=int))
    if columns.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    if columns.size > max_series:
        columns = np.sort(rng.choice(columns, max_series, replace=False))
    x = NoiseStore.open(run_dir / store).read_noise(coords=columns).T.astype(np.float64)
    x = x[np.isfinite(x).all(axis=1) & (x.std(axis=1) > 0)]
    if len(x) == 0:
        return float("nan")
    p = sgn.stable_test(x, rng=seed).pvalue
    p = p[np.isfinite(p)]
    return float((stats.false_discovery_control(p) <= 0.05).mean()) if p.size else float("nan")


def _fmt(x, digits=3) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _spread(values: pd.Series, digits=3) -> str:
    v = values.dropna()
    if v.empty:
        return "—"
    return (
        f"median {_fmt(v.median(), digits)} (range {_fmt(v.min(), digits)} to "
        f"{_fmt(v.max(), digits)}, {len(v)} runs)"
    )


def claims(frame: pd.DataFrame) -> tuple[str, dict]:
    lines, data = [], {}
    for proto, part in frame.groupby("protocol", sort=False):
        d = data.setdefault(proto, {})
        lines += [f"### {proto} noise ({len(part)} run-stores)", ""]
        d["gauss_shapiro_rejected_bh"] = part["gauss_shapiro_rejected_bh"].median()
        d["gauss_dagostino_rejected_bh"] = part["gauss_dagostino_rejected_bh"].median()
        lines.append(
            "1. Gaussian: fraction of coordinates rejected (BH, 5%): Shapiro-Wilk "
            f"{_spread(part['gauss_shapiro_rejected_bh'])}; D'Agostino-Pearson "
            f"{_spread(part['gauss_dagostino_rejected_bh'])}."
        )
        lines.append(
            f"2. alpha-stable: stable alpha {_spread(part['stable_alpha_median'])}; tail index "
            f"{_spread(part['tail_index_median'])}; stable test rejects "
            f"{_spread(part['stable_rejected_bh'])}."
        )
        d["stable_rejected_bh"] = part["stable_rejected_bh"].median()
        d["stable_alpha_median"] = part["stable_alpha_median"].median()
        for est in ("whittle", "dfa", "rs"):
            excess = part[f"hurst_{est}_median"] - part[f"hurst_{est}_baseline_mean"]
            d[f"hurst_{est}_excess"] = excess.median()
        above = (part["hurst_whittle_excess_lo"] > 0).sum()
        below = (part["hurst_whittle_excess_hi"] < 0).sum()
        lines.append(
            "3. Memory: H minus its shuffled baseline: Whittle "
            f"{_spread(part['hurst_whittle_median'] - part['hurst_whittle_baseline_mean'])}; DFA "
            f"{_spread(part['hurst_dfa_median'] - part['hurst_dfa_baseline_mean'])}; R/S "
            f"(corrected) {_spread(part['hurst_rs_median'] - part['hurst_rs_baseline_mean'])}. "
            f"Whittle 95% interval of the excess above 0 in {above}, below 0 in {below} of "
            f"{part['hurst_whittle_excess_lo'].notna().sum()} runs.  Raw H: Whittle "
            f"{_spread(part['hurst_whittle_median'])}; the seed authors' R/S statistic "
            f"{_spread(part['tan2021_mean_hurst'])}; Lo's test rejects "
            f"{_spread(part['lo_rejected_bh'])}."
        )
        d["runs_excess_above_0"], d["runs_excess_below_0"] = int(above), int(below)
        ok = part.dropna(subset=["sharpness", "hurst_whittle_median"])
        if len(ok) >= 5:
            rho, p = stats.spearmanr(ok["hurst_whittle_median"], ok["sharpness"])
            d["spearman_h_sharpness"], d["spearman_p"] = float(rho), float(p)
            lines.append(
                f"5. H against sharpness (top Hessian eigenvalue), all runs: Spearman rho = "
                f"{rho:+.3f} (p = {p:.2g}, {len(ok)} runs); a negative rho means larger H with "
                "flatter minima."
            )
            for group, g in ok.groupby("group", sort=False):
                if len(g) >= 5:
                    r, pg = stats.spearmanr(g["hurst_whittle_median"], g["sharpness"])
                    d[f"spearman_{group}"] = float(r)
                    lines.append(f"   - {group}: rho = {r:+.3f} (p = {pg:.2g}, {len(g)} runs)")
        lines.append("")
    # 4. optimizers, paired by seed within the strategies group
    strat = frame[(frame.group == "strategies") & (frame.protocol == "trajectory")]
    if not strat.empty:
        lines += ["### 4. H by optimizer (strategies group, trajectory noise)", ""]
        lines.append(
            "| weight decay | optimizer | H Whittle | H - shuffled | minus SGD's, paired by seed "
            "(95% t interval) | λ_max | test acc |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        strat = strat.assign(
            excess=strat["hurst_whittle_median"] - strat["hurst_whittle_baseline_mean"]
        )
        for wd, part in strat.groupby("weight_decay"):
            sgd = part[part.optimizer == "sgd"].set_index("seed")["excess"]
            for opt, g in part.groupby("optimizer", sort=False):
                diff = (g.set_index("seed")["excess"] - sgd).dropna()
                if opt != "sgd" and len(diff) >= 2:
                    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                    m = diff.mean()
                    cell = f"{m:+.4f} ({m - half:+.4f}, {m + half:+.4f})"
                    data.setdefault("optimizers", {})[f"{opt}_wd{wd:g}"] = float(diff.mean())
                else:
                    cell = "—"
                lines.append(
                    f"| {wd:g} | {opt} | {g['hurst_whittle_median'].mean():.4f} | "
                    f"{g['excess'].mean():+.4f} | {cell} | {g['sharpness'].mean():.3g} | "
                    f"{g['test_accuracy'].mean():.3f} |"
                )
        lines.append("")
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.findings", description=__doc__)
    ap.add_argument("sweep", type=Path, help="output folder of a finished sweep")
    ap.add_argument("--out", type=Path, required=True, help="where the tables are copied")
    ap.add_argument(
        "--stable-series", type=int, default=100, help="series per store for the stable test"
    )
    ap.add_argument(
        "--stable-seeds",
        type=int,
        nargs="*",
        default=[0],
        help="run the stable test (parametric bootstrap, ~10 s per store) on these seeds' runs",
    )
    args = ap.parse_args(argv)
    frame = collect_results(args.sweep)
    if frame.empty:
        print(f"error: no finished runs under {args.sweep}/runs.", file=sys.stderr)
        return 1
    rates = []
    todo = int(frame["seed"].isin(args.stable_seeds).sum())
    for _, row in frame.iterrows():
        if row["seed"] not in args.stable_seeds:
            rates.append(float("nan"))
            continue
        run_dir = args.sweep / "runs" / row["run_id"]
        rates.append(
            _stable_rejections(run_dir, row["store"], args.stable_series, int(row["seed"]))
        )
        print(f"stable test {sum(np.isfinite(rates))}/{todo}", file=sys.stderr, flush=True)
    frame["stable_rejected_bh"] = rates
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("results.md", "summary.csv", "sweep.json"):
        if (args.sweep / name).is_file():
            shutil.copy2(args.sweep / name, args.out / name)
    if (args.sweep / "plots").is_dir():
        shutil.copytree(args.sweep / "plots", args.out / "plots", dirs_exist_ok=True)
    frame.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text, data = claims(frame)
    command = "python -m experiments.findings " + " ".join(argv or sys.argv[1:])
    (args.out / "claims.md").write_text(f"# Claims, measured\n\nProduced by `{command}`.\n\n{text}")
    (args.out / "claims.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
