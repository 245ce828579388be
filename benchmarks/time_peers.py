"""Wall-clock timing of the peer estimators and fGn generators.

Run: .bench-venv/bin/python benchmarks/time_peers.py
For single-thread numbers set OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 (fathon's C
loop is OpenMP-parallel over window sizes). Each estimator is timed on one length-4096
float64 fGn series (H=0.7) in blocks of calls for about BUDGET_S seconds after a
warm-up call; the table gives the mean per call of the fastest block and the median
over blocks.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

N = 4096
BUDGET_S = 6.0
N_BLOCKS = 5


def time_call(fn, budget_s: float = BUDGET_S, n_blocks: int = N_BLOCKS) -> tuple[float, float, int]:
    fn()  # warm-up: imports, caches
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    per_block = max(1, int(budget_s / n_blocks / max(one, 1e-9)))
    blocks = []
    for _ in range(n_blocks):
        t0 = time.perf_counter()
        for _ in range(per_block):
            fn()
        blocks.append((time.perf_counter() - t0) / per_block)
    return min(blocks), float(np.median(blocks)), per_block * n_blocks


def main() -> None:
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(f"python {platform.python_version()}, numpy {np.__version__}, threads {threads}")
    x = peers.fbm_package_fgn(1, N, 0.7, seed=1)[0]
    lags = peers.default_lags(N)
    calls = {
        "nolds_dfa": lambda: peers.nolds_dfa(x),
        "nolds_rs": lambda: peers.nolds_rs(x),
        "hurst_compute_hc": lambda: peers.hurst_compute_hc(x),
        "hurst_compute_hc_simplified": lambda: peers.hurst_compute_hc_simplified(x),
        "mfdfa_dfa1": lambda: peers.mfdfa_dfa1(x, lags),
        "fathon_dfa1": lambda: peers.fathon_dfa1(x, lags),
    }
    print(f"estimators, one series of n={N}; lags (MFDFA/fathon) = {lags.tolist()}")
    for name, fn in calls.items():
        best, med, reps = time_call(fn)
        print(f"  {name:30s} best {best * 1e3:9.3f} ms  median {med * 1e3:9.3f} ms  ({reps} calls)")
    n_paths, n, H = 200, 16384, 0.7
    print(f"generators, {n_paths} paths x {n} at H={H}")
    for name, gen in peers.GENERATORS.items():
        gen(2, n, H, seed=0)  # warm-up
        ts = []
        for rep in range(2 if name == "fbm_package_fgn" else 5):  # fbm: ~17 s per run
            t0 = time.perf_counter()
            gen(n_paths, n, H, seed=rep)
            ts.append(time.perf_counter() - t0)
        print(
            f"  {name:30s} best {min(ts):8.3f} s  median {np.median(ts):8.3f} s  "
            f"({min(ts) / n_paths * 1e3:.3f} ms/path)"
        )


if __name__ == "__main__":
    main()
