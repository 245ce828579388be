"""Speed and memory of escape-time simulation: 10^4 paths x 10^4 steps of a 1-D double well.

Run from the repository root (either environment; the peer rows need ``fbm`` and
``stochastic`` from ``.bench-venv`` and are skipped without them):

    .bench-venv/bin/python benchmarks/escape_speed.py > benchmarks/results/escape_speed.md

The model: dX = -U'(X) dt + sigma dB^H ("fbm" scaling), U the symmetric quartic double well
``QuarticDoubleWell.symmetric(barrier=1, curvature=8)`` (minima at -1 and 1), sigma = 0.8,
dt = 0.01, every path starting at -1; escape = first arrival at the other minimum, detected on
the fly with only the exit step and position kept (``keep="final"``).

Rows:

- ours: ``simulate_sde(..., domain=..., keep="final")``; the first call (cold) on its own,
  then the median of 3; also with every thread pool at 1 (``sgn_memory.sde._simulate._THREADS`` and
  ``sgn_memory.fbm._THREADS``); also at H = 0.3 and 0.5; then 10^4 paths x 10^5 steps once.
- naive: the same scheme written the obvious way, with all the noise in memory
  (``sgn.fgn(n_steps, H, size=n_paths)``, then one vectorised Euler step per time step with an
  exit mask): the same exact fGn, so it shows what the bounded-memory design costs or saves.
- peers: exact fGn from the ``fbm`` and ``stochastic`` packages, one path per call, timed on
  200 paths and extrapolated to 10^4 (noise only, no Euler steps).

Peak memory is traced with ``tracemalloc`` in a separate call (numpy reports its buffers; FFT
scratch inside pocketfft is not seen).  The full run takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import importlib
import math
import time

import _common as C
import numpy as np

import sgn_memory as sgn
from sgn_memory.passage import escape_times
from sgn_memory.sde import QuarticDoubleWell, simulate_sde

sde_mod = importlib.import_module("sgn_memory.sde._simulate")
fbm_mod = importlib.import_module("sgn_memory.fbm")

SEED = 20250101
WELL = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
DOMAIN = WELL.escape_domain(0)
SIGMA, DT = 0.8, 0.01
N_PATHS, N_STEPS = 10_000, 10_000


def ours(hurst: float, n_paths: int = N_PATHS, n_steps: int = N_STEPS):
    return simulate_sde(
        WELL,
        -1.0,
        hurst=hurst,
        sigma=SIGMA,
        dt=DT,
        n_steps=n_steps,
        size=n_paths,
        domain=DOMAIN,
        keep="final",
        rng=SEED,
    )


def naive(hurst: float, n_paths: int = N_PATHS, n_steps: int = N_STEPS):
    """All noise in memory, one vectorised Euler step per time step, an exit mask."""
    noise = sgn.fgn(n_steps, hurst, size=n_paths, rng=SEED)
    noise *= SIGMA * DT**hurst
    x = np.full(n_paths, -1.0)
    exit_step = np.full(n_paths, -1)
    alive = np.ones(n_paths, dtype=bool)
    for k in range(n_steps):
        x = x - DT * WELL.gradient(x) + noise[:, k]
        out = alive & (x >= DOMAIN.high)
        exit_step[out] = k + 1
        alive &= ~out
    return exit_step


def _fmt_mem(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def main() -> None:
    C.emit(
        C.header(
            "Speed and memory of escape-time simulation (fBM-driven SDE, 1-D double well)",
            extra=[
                f"model: `QuarticDoubleWell.symmetric(barrier=1, curvature=8)`, x0 = -1, sigma = "
                f"{SIGMA}, dt = {DT}, scaling 'fbm', escape = first arrival at x = +1",
                f"`sgn_memory.sde._simulate._THREADS` = {sde_mod._THREADS}, "
                f"`sgn_memory.fbm._THREADS` = {fbm_mod._THREADS}; seed {SEED}",
            ],
        )
    )
    rows = []

    # --- ours, the headline configuration
    C.progress("ours H=0.7: cold call")
    cold, sim = C.timed(lambda: ours(0.7))
    C.progress("ours H=0.7: 3 warm calls")
    warm, times = C.median_time(lambda: ours(0.7), repeats=3)
    C.progress("ours H=0.7: traced memory")
    peak = C.traced_peak_bytes(lambda: ours(0.7))
    escaped = float((sim.exit_step > 0).mean())
    rows.append(
        [
            "**ours** `simulate_sde(..., domain=..., keep='final')`",
            "10,000 x 10,000",
            "0.7",
            f"{escaped:.1%}",
            f"**{C.fmt_seconds(warm)}** (cold {C.fmt_seconds(cold)}; "
            + ", ".join(C.fmt_seconds(t) for t in times)
            + ")",
            _fmt_mem(peak),
        ]
    )
    settings = sim.settings
    # --- ours, single thread everywhere
    C.progress("ours H=0.7: all thread pools at 1")
    saved = sde_mod._THREADS, fbm_mod._THREADS
    try:
        sde_mod._THREADS = fbm_mod._THREADS = 1
        single, _ = C.timed(lambda: ours(0.7))
    finally:
        sde_mod._THREADS, fbm_mod._THREADS = saved
    rows.append(
        [
            "ours, every thread pool at 1",
            "10,000 x 10,000",
            "0.7",
            f"{escaped:.1%}",
            C.fmt_seconds(single),
            "same",
        ]
    )
    # --- ours, other H
    for h in (0.3, 0.5):
        C.progress(f"ours H={h}")
        t, s = C.timed(lambda h=h: ours(h))
        rows.append(
            [
                "ours",
                "10,000 x 10,000",
                f"{h}",
                f"{float((s.exit_step > 0).mean()):.1%}",
                C.fmt_seconds(t),
                "",
            ]
        )
    # --- ours, 10^5 steps, traced (allocation tracing slows large allocations only)
    C.progress("ours H=0.7: 10,000 x 100,000 steps, traced")
    t0 = time.perf_counter()
    peak_long = C.traced_peak_bytes(lambda: ours(0.7, n_steps=100_000))
    t_long = time.perf_counter() - t0
    long_lanes = sde_mod.default_lanes(100_000)
    rows.append(
        [
            "ours, 10^5 steps (timed while tracing memory)",
            "10,000 x 100,000",
            "0.7",
            "—",
            C.fmt_seconds(t_long),
            _fmt_mem(peak_long),
        ]
    )
    # --- naive, all noise in memory
    C.progress("naive H=0.7")
    t_naive, exits_naive = C.timed(lambda: naive(0.7))
    C.progress("naive H=0.7: traced memory")
    peak_naive = C.traced_peak_bytes(lambda: naive(0.7))
    rows.append(
        [
            "naive: all fGn in memory (`sgn.fgn` for every path), one Euler step per time step",
            "10,000 x 10,000",
            "0.7",
            f"{float((exits_naive > 0).mean()):.1%}",
            C.fmt_seconds(t_naive),
            _fmt_mem(peak_naive),
        ]
    )
    # --- peers: noise only
    try:
        import peers

        peer_fns = {
            "fbm package: `fbm.FBM(n, H, method='daviesharte').fgn()` per path": (
                peers.fbm_package_fgn
            ),
            "stochastic: `FractionalGaussianNoise(...).sample(n)` per path": peers.stochastic_fgn,
        }
    except ImportError as err:  # pragma: no cover - the peer environment is optional
        C.progress(f"peers skipped: {err}")
        peer_fns = {}
    n_peer = 200
    for name, fn in peer_fns.items():
        C.progress(f"peer {name}: {n_peer} paths")
        fn(2, N_STEPS, 0.7)  # warm-up (eigenvalue caches)
        t, _ = C.timed(lambda fn=fn: fn(n_peer, N_STEPS, 0.7))
        rows.append(
            [
                f"peer fGn only: {name}",
                f"{n_peer} x 10,000 timed",
                "0.7",
                "—",
                f"{C.fmt_seconds(t * N_PATHS / n_peer)} (extrapolated, noise only)",
                "",
            ]
        )

    C.emit("## 10,000 paths x 10,000 steps with escape detection")
    C.emit()
    C.emit(
        C.markdown_table(
            [
                "method",
                "paths x steps",
                "H",
                "escaped by the horizon",
                "wall time",
                "peak traced memory",
            ],
            rows,
            align="lrrrrr",
        )
    )
    C.emit()
    full = N_PATHS * N_STEPS * 8
    C.emit(
        f"Target: <= 10 s on 2 cores with bounded memory.  The noise of all 10,000 paths would "
        f"take {full / 2**20:,.0f} MiB at 10^4 steps and {10 * full / 2**30:.1f} GiB at 10^5; "
        f"ours keeps {settings['lanes']} lanes per block at 10^4 steps "
        f"({settings['block_paths']} paths per block) and {long_lanes} at "
        f"10^5 steps, so its peak does not grow with the number of paths "
        f"(`tests/test_sde.py::test_memory_stays_bounded_when_only_exits_are_kept`).  Most of "
        f"the time is the exact fGn (Davies-Harte, drawn up to the horizon for every path, "
        f"~20 ns per value on 2 cores); the Euler steps and exit checks add a few ns per "
        f"path-step.  The naive row draws the same fGn but keeps all of it."
    )
    C.emit()
    mean_steps = float(np.mean(np.where(sim.exit_step > 0, sim.exit_step, N_STEPS)))
    C.emit(
        f"Paths at H = 0.7 spend {mean_steps:,.0f} steps inside on average (censored ones "
        f"count {N_STEPS:,}); the escape statistics of this configuration: "
        f"`escape_times(sim)` -> {_escape_line(sim)}."
    )


def _escape_line(sim) -> str:
    e = escape_times(sim, n_bootstrap=199)
    lo, hi = e.mean_ci
    kind = "restricted mean" if e.mean_restricted else "mean"
    return (
        f"{kind} {e.mean:.4g} [{lo:.4g}, {hi:.4g}], censored {e.censored_fraction:.1%}, "
        f"exponential-law mean {e.exponential.mean:.4g}, exponential-law p = "
        f"{e.exponential.pvalue:.3g}"
    )


if __name__ == "__main__":
    t_start = time.perf_counter()
    main()
    C.emit()
    C.emit(f"Total run time: {math.ceil(time.perf_counter() - t_start)} s.")
