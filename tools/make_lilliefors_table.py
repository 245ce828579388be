"""Simulate the null law of the Lilliefors statistic; write sgn_memory/tails/_lilliefors_table.py.

    .venv/bin/python tools/make_lilliefors_table.py     # ~5 min on 2 cores
    .venv/bin/ruff format sgn_memory/tails/_lilliefors_table.py

The Lilliefors statistic D (Kolmogorov-Smirnov distance after standardising with the sample mean
and the ddof=1 standard deviation) has a null law that depends on n only.  For every n of a grid
we draw i.i.d. N(0, 1) samples (seeded), compute D exactly as :func:`gaussianity` does and store
upper-tail quantiles of sqrt(n) D.  statsmodels' table (a log-quadratic fit across n) rejects only
3.5-4.6% at the 5% level for n = 300-1500 (benchmarks/tails.py, lilliefors_size); this table is
used instead.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sgn_memory.tails._gaussian import _lilliefors_stat  # noqa: E402

SEED = 20261121
# upper-tail probabilities of the table
ALPHAS = (
    0.999,
    0.99,
    0.975,
    0.95,
    0.9,
    0.85,
    0.8,
    0.75,
    0.7,
    0.6,
    0.5,
    0.4,
    0.3,
    0.25,
    0.2,
    0.15,
    0.1,
    0.075,
    0.05,
    0.04,
    0.03,
    0.025,
    0.02,
    0.015,
    0.01,
    0.0075,
    0.005,
    0.0025,
    0.001,
)
GRID = {  # n: replicates
    **{
        n: 200_000
        for n in (8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000)
    },
    **{n: 100_000 for n in (1500, 2000, 3000)},
    **{n: 50_000 for n in (5000, 10000)},
}


def simulate(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    chunk = max(1, 2_000_000 // n)
    done = 0
    while done < reps:
        b = min(chunk, reps - done)
        x = np.sort(rng.standard_normal((b, n)), axis=1)
        x -= x.mean(axis=1, keepdims=True)
        x /= np.sqrt((x * x).sum(axis=1, keepdims=True) / (n - 1))
        out.append(_lilliefors_stat(x, n))
        done += b
    return np.sqrt(n) * np.concatenate(out)


def main() -> None:
    rng = np.random.default_rng(SEED)
    rows = []
    for n, reps in GRID.items():
        d = simulate(n, reps, rng)
        rows.append(np.quantile(d, 1 - np.asarray(ALPHAS)))
        print(f"n={n} done", file=sys.stderr, flush=True)
    table = np.array(rows)
    lines = [
        '"""Null quantiles of sqrt(n) * D for the Lilliefors test (generated; do not edit).',
        "",
        f"Made by tools/make_lilliefors_table.py on {datetime.date.today()}, seed {SEED}:",
        "rows are n in N_GRID, columns upper-tail probabilities ALPHAS; replicates per n in",
        "REPLICATES.",
        '"""',
        "",
        f"N_GRID = {tuple(GRID)}",
        f"REPLICATES = {tuple(GRID.values())}",
        f"ALPHAS = {ALPHAS}",
        "QUANTILES = (",
        *(f"    ({', '.join(f'{v:.6f}' for v in row)})," for row in table),
        ")",
        "",
    ]
    target = ROOT / "sgn_memory" / "tails" / "_lilliefors_table.py"
    target.write_text("\n".join(lines))
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
