"""How long the default battery of ``sgn_memory.analyze`` takes on a large store, and its memory.

Run from the repository root:

    .venv/bin/python benchmarks/analyze_scale.py            # 3000 x 100,000 (1.2 GB), ~5 min
    .venv/bin/python benchmarks/analyze_scale.py --quick    # 3000 x 10,000

Writes a NoiseStore of ``steps x coordinates`` fGn (H = 0.6, float32) in a temporary folder,
then runs ``analyze`` on it (default battery: R/S, DFA, Whittle with shuffled baselines, Lo,
five Gaussianity tests, tail index, stable fit, ACF, windows over training) in a child process
whose own peak resident memory (``VmHWM`` of /proc/self/status) is reported, for a quarter,
a half and all of the coordinates (how time scales with them), and for half the steps.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np

import sgn_memory as sgn
from sgn_memory.store import CoordinateMap, NoiseStore

CHILD = """
import json, sys, time
import sgn_memory as sgn
t = time.perf_counter()
a = sgn.analyze(sys.argv[1], max_coords=int(sys.argv[2]), seed=0)
elapsed = time.perf_counter() - t
# VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork)
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024
h = float(a.runs.loc[0, "hurst_whittle_median"])
print(json.dumps({"seconds": elapsed, "rss_mib": rss, "series": len(a.series), "h": h}))
"""


def make_store(path: Path, steps: int, k: int) -> None:
    coords = CoordinateMap(
        param_name=np.array([f"p{j // 1000}" for j in range(k)]),
        flat_index=np.arange(k) % 1000,
        layer=np.array([f"layer{j // (k // 4 or 1)}" for j in range(k)]),
    )
    with NoiseStore.create(path, coordinates=coords) as store:
        block = 10_000  # generate in blocks of coordinates, append in blocks of steps
        x = np.empty((steps, k), dtype=np.float32)
        for start in range(0, k, block):
            stop = min(k, start + block)
            x[:, start:stop] = sgn.fgn(steps, 0.6, size=stop - start, rng=start, dtype=np.float32).T
        for s in range(0, steps, 256):
            store.append(x[s : s + 256], step=np.arange(s, min(steps, s + 256)))


def run_child(path: Path, k: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(k)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    steps, k = (3000, 10_000) if args.quick else (3000, 100_000)
    C.emit(C.header("sgn-analyze at scale", extra=[f"store: {steps} steps x {k:,} coordinates"]))
    rows = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "big"
        C.progress(f"writing {steps} x {k} store")
        t = time.perf_counter()
        make_store(path, steps, k)
        C.emit(f"- writing the store took {time.perf_counter() - t:.1f} s")
        for frac in (0.25, 0.5, 1.0):
            n = int(k * frac)
            C.progress(f"analyze {n} coordinates")
            r = run_child(path, n)
            rows.append(
                [
                    f"{steps} x {n:,}",
                    f"{steps * n * 4 / 2**30:.2f} GiB",
                    f"{r['seconds']:.0f} s",
                    f"{r['seconds'] / n * 1e3:.2f} ms",
                    f"{r['rss_mib']:.0f} MiB",
                    f"{r['h']:.3f}",
                ]
            )
        half = Path(tmp) / "half"
        C.progress("half the steps")
        make_store(half, steps // 2, k // 4)
        r = run_child(half, k // 4)
        rows.append(
            [
                f"{steps // 2} x {k // 4:,}",
                f"{steps // 2 * k // 4 * 4 / 2**30:.2f} GiB",
                f"{r['seconds']:.0f} s",
                f"{r['seconds'] / (k // 4) * 1e3:.2f} ms",
                f"{r['rss_mib']:.0f} MiB",
                f"{r['h']:.3f}",
            ]
        )
    C.emit("")
    C.emit(
        C.markdown_table(
            [
                "steps x coordinates",
                "noise (float32)",
                "analyze",
                "per series",
                "peak RSS",
                "median H (truth 0.6)",
            ],
            rows,
        )
    )
    C.emit(
        "\nGoal: 3000 x 100,000 in <= 5 min with peak memory <= 2 GB on 2 cores.  Time is linear "
        "in the number of coordinates (blocks of 1024 series); memory is set by the block and "
        "the per-series table, not by the store."
    )
    C.emit(f"\nLoad average at end (1, 5, 15 min): {C.load_average()}")


if __name__ == "__main__":
    main()
