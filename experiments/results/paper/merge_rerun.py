"""Merge a rerun of some of the 'paper' runs into the committed tables of results/paper.

    python experiments/results/paper/merge_rerun.py runs/paper-rerun

Rows of results.csv whose (run_id, store) the rerun produced are replaced by the rerun's (with
the stable test run on seed 0's rerun stores, as ``experiments.findings`` does); summary.csv,
results.md, the plot, claims.md and claims.json are rebuilt from the merged rows, and
rerun-changes.md lists every replaced row's main numbers before and after.  Used after the
collector fix of 2026-12-01 (rerun-batch-reference.toml): the earlier runs of the other groups
are unaffected and stay as they were (their runs/ folders are not on this machine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from experiments.findings import _stable_rejections, claims  # noqa: E402
from experiments.tables import collect_results, markdown, plot, summarise  # noqa: E402

SHOWN = [
    "hurst_whittle_median",
    "hurst_whittle_excess",
    "hurst_dfa_median",
    "hurst_rs_median",
    "tan2021_mean_hurst",
    "lo_rejected_bh",
]


def main(argv: list[str]) -> int:
    rerun = Path(argv[0])
    old = pd.read_csv(HERE / "results.csv")
    new = collect_results(rerun)
    if new.empty:
        print(f"error: no finished runs under {rerun}/runs.", file=sys.stderr)
        return 1
    new["stable_rejected_bh"] = [
        _stable_rejections(rerun / "runs" / r.run_id, r.store, 100, int(r.seed))
        if r.seed == 0
        else float("nan")
        for r in new.itertuples()
    ]
    key = ["run_id", "store"]
    replaced = old.merge(new[key], on=key, how="inner")
    if len(replaced) != len(new):
        print("error: the rerun has rows the committed table lacks.", file=sys.stderr)
        return 1
    keep = old.merge(new[key], on=key, how="left", indicator=True)
    merged = pd.concat(
        [old[(keep["_merge"] == "left_only").to_numpy()], new[old.columns]], ignore_index=True
    )
    order = {rid: i for i, rid in enumerate(dict.fromkeys(old["run_id"]))}
    # the committed order: runs as before, trajectory first
    rank = merged["run_id"].map(order) * 2 + merged["store"].ne("trajectory").astype(int)
    merged = merged.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    merged.to_csv(HERE / "results.csv", index=False, float_format="%.6g")
    summary = summarise(merged)
    summary.to_csv(HERE / "summary.csv", index=False, float_format="%.6g")
    text = markdown(
        summary,
        title="Results of the 'paper' sweep",
        command="python -m experiments paper (batch-reference rows: rerun-batch-reference.toml, "
        "merged by merge_rerun.py)",
    )
    names = plot(merged, HERE / "plots")
    text += "".join(f"\n![{n}](plots/{n})\n" for n in names)
    (HERE / "results.md").write_text(text)
    claim_text, data = claims(merged)
    command = "python experiments/results/paper/merge_rerun.py " + " ".join(argv)
    (HERE / "claims.md").write_text(
        f"# Claims, measured\n\nProduced by `{command}`.\n\n{claim_text}"
    )
    (HERE / "claims.json").write_text(json.dumps(data, indent=2, default=float) + "\n")
    # what moved: configuration means over seeds, before and after
    cols = ["group", "model", "dataset", "store"]
    before = old.merge(new[key], on=key).groupby(cols, sort=False)[SHOWN].mean()
    after = new.groupby(cols, sort=False)[SHOWN].mean()
    lines = [
        "# What the rerun of the batch-reference runs changed",
        "",
        f"Produced by `{command}`; mean over seeds, before -> after.",
        "",
        "| group | model | dataset | record | " + " | ".join(SHOWN) + " |",
        "|" + "---|" * (4 + len(SHOWN)),
    ]
    for idx in after.index:
        cells = [f"{before.loc[idx, m]:.3f} -> {after.loc[idx, m]:.3f}" for m in SHOWN]
        lines.append("| " + " | ".join(map(str, idx)) + " | " + " | ".join(cells) + " |")
    if np.allclose(
        before.reindex(after.index).to_numpy(float), after.to_numpy(float), equal_nan=True
    ):
        # run again on tables that already hold the rerun: the table of changes stays as it is
        print("the committed tables already hold this rerun; rerun-changes.md kept.")
    else:
        (HERE / "rerun-changes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(claim_text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
