"""Sanity check of the peer estimators on white noise and exact fGn (H=0.8).

Run: .bench-venv/bin/python benchmarks/sanity_peers.py
fGn comes from the fbm package (exact Davies-Harte), independent of sgn_memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

N = 4096
N_SERIES = 20
SEED = 20240611


def main() -> None:
    rng = np.random.default_rng(SEED)
    white = rng.standard_normal((N_SERIES, N))
    fgn08 = peers.fbm_package_fgn(N_SERIES, N, 0.8, seed=SEED)
    lags = peers.default_lags(N)
    print(f"n={N}, {N_SERIES} series each; lags for MFDFA/fathon: {lags.tolist()}")
    estimators = dict(peers.ESTIMATORS_NO_LAGS)
    estimators["hurst_compute_hc_simplified"] = peers.hurst_compute_hc_simplified
    for name, fn in peers.ESTIMATORS_WITH_LAGS.items():
        estimators[name] = lambda x, fn=fn: fn(x, lags)
    print(f"{'estimator':30s} {'white mean':>10s} {'sd':>6s} {'fGn0.8 mean':>11s} {'sd':>6s}")
    for name, fn in estimators.items():
        hw = np.array([fn(x) for x in white])
        hf = np.array([fn(x) for x in fgn08])
        print(
            f"{name:30s} {hw.mean():10.3f} {hw.std(ddof=1):6.3f} "
            f"{hf.mean():11.3f} {hf.std(ddof=1):6.3f}"
        )


if __name__ == "__main__":
    main()
