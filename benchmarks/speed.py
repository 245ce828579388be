"""Wall-clock speed of sgn_memory on a large batch, against peer packages run per series.

Run from the repository root:

    .bench-venv/bin/python benchmarks/speed.py            # full: 10,000 x 4096 float32 batch
    .bench-venv/bin/python benchmarks/speed.py --quick    # smoke run (< 30 s)

Part 1, estimators: a batch of fGn (H = 0.7) as float32 from ``sgn.fgn``.  Ours run on the whole
batch in one call each; the first call is timed on its own (cold: e.g. Whittle builds a per-n
table) and the table reports the median of the next calls (warm).  Each runs once more with
``sgn_memory.hurst._common._THREADS = 1`` (the block thread pool of R/S, DFA and the Lo
test).  Peers are 1-D: they run in a Python loop on a subset of the batch (float64 copies)
and are extrapolated linearly to the whole batch.

Part 2, fGn generation: 200 paths x 16384 at H = 0.7, ours (float64, float32) against the ``fbm``
and ``stochastic`` packages (one path per call in a loop); ours also with
``sgn_memory.fbm._THREADS = 1``.

Prints a Markdown report to stdout (progress goes to stderr).  The full run takes ~2-3 min.
"""

from __future__ import annotations

import argparse
import importlib
import warnings

import _common as C
import numpy as np
import peers

import sgn_memory as sgn
import sgn_memory.hurst._common as sgn_hurst

# ``sgn_memory.fbm`` the attribute is the function; the module holding ``_THREADS`` is this one.
sgn_fbm = importlib.import_module("sgn_memory.fbm")

SEED = 20240611
H = 0.7
N = 4096


def _peer_loop(fn, xs: list[np.ndarray]):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for row in xs:
                fn(row)

    return run


def _fmt_mem(nbytes: int, input_bytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MiB ({nbytes / input_bytes:.2f}x input)"


def estimators(n_series: int, n_peer: int, n_nolds_dfa: int, repeats: int) -> None:
    C.progress(f"generating {n_series} x {N} float32 fGn")
    gen_s, x = C.timed(lambda: sgn.fgn(N, H, size=n_series, rng=SEED, dtype=np.float32))
    input_bytes = x.nbytes
    lags = sgn.dfa_scales(N)
    default_threads = sgn_hurst._THREADS

    ours = {
        "DFA-1": ("`hurst_dfa(x)`", lambda: sgn.hurst_dfa(x)),
        "R/S": ("`hurst_rs(x)`", lambda: sgn.hurst_rs(x)),
        "Whittle": ("`hurst_whittle(x)`", lambda: sgn.hurst_whittle(x)),
        "Lo test": ("`long_memory_test(x)`", lambda: sgn.long_memory_test(x)),
    }
    res: dict[str, dict] = {}
    for key, (_call, fn) in ours.items():
        C.progress(f"ours {key}: cold + {repeats} warm calls")
        cold, warm, times = C.cold_warm(fn, repeats=repeats)
        C.progress(f"ours {key}: traced memory")
        peak = C.traced_peak_bytes(fn)
        res[key] = {"cold": cold, "warm": warm, "times": times, "peak": peak}
    single: dict[str, float] = {}
    try:
        sgn_hurst._THREADS = 1
        for key in ours:
            C.progress(f"ours {key}: _THREADS=1")
            single[key], _ = C.median_time(ours[key][1], repeats=repeats)
    finally:
        sgn_hurst._THREADS = default_threads

    # peers on a float64 subset, extrapolated
    sub = [np.ascontiguousarray(r, dtype=np.float64) for r in x[:n_peer]]
    peer_defs = {
        "MFDFA DFA-1": ("DFA-1", lambda r: peers.mfdfa_dfa1(r, lags), n_peer, repeats),
        "fathon DFA-1 (OpenMP, 2 threads)": (
            "DFA-1",
            lambda r: peers.fathon_dfa1(r, lags),
            n_peer,
            repeats,
        ),
        "nolds.dfa(fit_exp='poly')": ("DFA-1", peers.nolds_dfa, n_nolds_dfa, 1),
        "nolds.hurst_rs(fit='poly')": ("R/S", peers.nolds_rs, n_peer, repeats),
        "hurst.compute_Hc(kind='change', simplified=False)": (
            "R/S",
            peers.hurst_compute_hc,
            n_peer,
            repeats,
        ),
    }
    peer_res = {}
    for name, (match, fn, count, reps) in peer_defs.items():
        C.progress(f"{name}: {count} series x {reps}")
        fn(sub[0])  # warm-up: imports, caches
        med, _ = C.median_time(_peer_loop(fn, sub[:count]), repeats=reps)
        peer_res[name] = (match, count, med / count)

    # ---------------------------------------------------------------- table
    big = f"{n_series:,}"
    rows = []
    for key, (call, _fn) in ours.items():
        r = res[key]
        rows.append(
            [
                f"ours {key} {call}",
                f"{n_series:,} (one call)",
                C.fmt_seconds(r["warm"] / n_series),
                f"{C.fmt_seconds(r['warm'])} (measured)",
                "—",
                "—",
                _fmt_mem(r["peak"], input_bytes),
            ]
        )
    for key in ours:
        rows.append(
            [
                f"ours {key} {ours[key][0]}, `_THREADS = 1`",
                f"{n_series:,} (one call)",
                C.fmt_seconds(single[key] / n_series),
                f"{C.fmt_seconds(single[key])} (measured)",
                "—",
                "—",
                "same",
            ]
        )
    for name, (match, count, per) in peer_res.items():
        total = per * n_series
        rows.append(
            [
                f"{name} (vs ours {match})",
                f"{count} (loop)",
                C.fmt_seconds(per),
                f"{C.fmt_seconds(total)} (extrapolated)",
                C.fmt_speedup(total / res[match]["warm"]),
                C.fmt_speedup(total / single[match]),
                "",
            ]
        )
    C.emit(f"## Hurst estimators: {big} series x {N} float32 fGn (H = {H})")
    C.emit()
    C.emit(
        C.markdown_table(
            [
                "method",
                "series timed",
                "seconds per series",
                f"seconds for {big} series",
                "speed-up of ours",
                "speed-up of ours, `_THREADS=1`",
                "peak traced memory (ours)",
            ],
            rows,
            align="lrrrrrr",
        )
    )
    C.emit()
    cold_txt = "; ".join(
        f"{k} {C.fmt_seconds(v['cold'])} cold vs {C.fmt_seconds(v['warm'])} warm"
        for k, v in res.items()
    )
    spread = "; ".join(
        f"{k} " + ", ".join(C.fmt_seconds(t) for t in v["times"]) for k, v in res.items()
    )
    C.emit(
        f"- Ours: median of {repeats} warm calls on the whole batch (default "
        f"`_THREADS = {default_threads}`). First (cold) calls in this process: {cold_txt}. "
        "Whittle's cold call includes building its per-n likelihood table (cached per n); DFA "
        "caches its polynomial bases per window size."
    )
    C.emit(f"- Individual warm calls: {spread}.")
    C.emit(
        "- `_THREADS = 1` (`sgn_memory.hurst._common._THREADS`) limits only the thread pool over "
        "blocks of series (used by R/S, DFA and the Lo test); numpy/OpenBLAS and scipy.fft thread "
        "pools are unchanged (the environment variables cannot be changed after import). "
        "Whittle does not use that pool (its FFT uses `workers=-1`), so its 1-thread row is a "
        "repeat."
    )
    C.emit(
        f"- Peers: one Python call per series on float64 copies of the first series of the same "
        f"batch (conversion not timed), after one untimed warm-up call; median of {repeats} "
        f"passes over the subset (nolds.dfa: {n_nolds_dfa} series, one pass; it takes ~0.35 s "
        f"per series). 'seconds for {big} series' = seconds per series x {big}, a linear "
        "extrapolation, not a measurement. fathon's C loop over window sizes runs under OpenMP "
        "on all cores by default; it was left that way."
    )
    C.emit(
        "- Speed-up = peer's seconds for the batch / ours (DFA peers vs our `hurst_dfa` order 1, "
        "R/S peers vs our `hurst_rs`). MFDFA and fathon get our default lags "
        f"`dfa_scales({N})` = {lags[0]}…{lags[-1]} ({lags.size} sizes); nolds and `hurst` use "
        "their default scales, so their work per series differs from ours."
    )
    C.emit(
        f"- Memory: peak of numpy allocations traced by `tracemalloc` during one call (a separate, "
        f"untimed call), relative to the input array ({input_bytes / 2**20:,.0f} MiB, float32). "
        "Scratch memory that FFT/BLAS allocate internally is not traced."
    )
    C.emit(
        f"- Generating the batch with `sgn.fgn(..., dtype=np.float32)` took "
        f"{C.fmt_seconds(gen_s)} (not part of any timing)."
    )
    C.emit()


def generators(n_paths: int, n: int, n_fbm: int, repeats: int) -> None:
    rows = []
    ours = {}
    for label, dtype in (("float64", np.float64), ("float32", np.float32)):
        C.progress(f"fgn ours {label}")

        def fn(dtype=dtype):
            return sgn.fgn(n, H, size=n_paths, rng=SEED, dtype=dtype)

        cold, warm, _ = C.cold_warm(fn, repeats=repeats)
        ours[label] = (cold, warm)
        rows.append(
            [
                f"ours `sgn.fgn(n, H, size={n_paths}, dtype=np.{label})`",
                f"{n_paths} (one call)",
                f"{C.fmt_seconds(warm)} (measured)",
                C.fmt_seconds(warm / n_paths),
                "—",
                "—",
            ]
        )
    default_threads = sgn_fbm._THREADS
    try:
        sgn_fbm._THREADS = 1
        for label, dtype in (("float64", np.float64), ("float32", np.float32)):
            C.progress(f"fgn ours {label}, _THREADS=1")
            warm1, _ = C.median_time(
                lambda dtype=dtype: sgn.fgn(n, H, size=n_paths, rng=SEED, dtype=dtype),
                repeats=repeats,
            )
            rows.append(
                [
                    f"ours `sgn.fgn(..., dtype=np.{label})`, `sgn_memory.fbm._THREADS = 1`",
                    f"{n_paths} (one call)",
                    f"{C.fmt_seconds(warm1)} (measured)",
                    C.fmt_seconds(warm1 / n_paths),
                    "—",
                    "—",
                ]
            )
    finally:
        sgn_fbm._THREADS = default_threads
    C.progress(f"fgn stochastic x {repeats}")
    peers.stochastic_fgn(2, n, H, seed=0)  # warm-up: imports, eigenvalue cache
    st, _ = C.median_time(lambda: peers.stochastic_fgn(n_paths, n, H, seed=SEED), repeats=repeats)
    C.progress(f"fgn fbm: {n_fbm} paths")
    peers.fbm_package_fgn(1, 64, H, seed=0)  # imports
    fb, _ = C.median_time(lambda: peers.fbm_package_fgn(n_fbm, n, H, seed=SEED), repeats=1)
    fb_total = fb / n_fbm * n_paths
    for name, total, timed_paths, how in (
        ("`stochastic` FractionalGaussianNoise.sample", st, n_paths, "measured"),
        (
            "`fbm` FBM(method='daviesharte').fgn",
            fb_total,
            n_fbm,
            "measured" if n_fbm == n_paths else "extrapolated",
        ),
    ):
        rows.append(
            [
                name,
                f"{timed_paths} (loop)",
                f"{C.fmt_seconds(total)} ({how})",
                C.fmt_seconds(total / n_paths),
                C.fmt_speedup(total / ours["float64"][1]),
                C.fmt_speedup(total / ours["float32"][1]),
            ]
        )
    C.emit(f"## fGn generation: {n_paths} paths x {n}, H = {H}")
    C.emit()
    C.emit(
        C.markdown_table(
            [
                "method",
                "paths timed",
                f"seconds for {n_paths} paths",
                "per path",
                "speed-up of ours (float64)",
                "speed-up of ours (float32)",
            ],
            rows,
            align="lrrrrr",
        )
    )
    C.emit()
    C.emit(
        f"- Ours and `stochastic`: median of {repeats} calls after a first call (both cache the "
        f"circulant eigenvalues per (n, H)); ours draws blocks of paths on a thread pool of "
        f"`sgn_memory.fbm._THREADS` = {default_threads} threads (speed-ups are against that); "
        "our first calls took "
        + ", ".join(f"{k} {C.fmt_seconds(v[0])}" for k, v in ours.items())
        + f". `fbm`: one pass over {n_fbm} paths (a new `FBM` object, which computes its "
        "eigenvalues on the first path)"
        + (f", extrapolated x{n_paths // n_fbm} to {n_paths} paths." if n_fbm != n_paths else ".")
    )
    C.emit(
        "- All three are exact Davies-Harte; the peers return one path per call (no batched "
        "sampler). Ours draws all paths in blocks with one batched real FFT per block."
    )
    C.emit()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (< 30 s)")
    args = ap.parse_args(argv)
    if args.quick:
        n_series, n_peer, n_nolds_dfa, repeats = 500, 10, 2, 2
        n_paths, n_fbm, gen_repeats = 200, 10, 3
    else:
        n_series, n_peer, n_nolds_dfa, repeats = 10_000, 200, 20, 3
        n_paths, n_fbm, gen_repeats = 200, 200, 11
    C.emit(
        C.header(
            "Speed of sgn_memory against peer packages",
            extra=[
                f"estimators: {n_series:,} x {N} float32 fGn, H = {H}, "
                f"`sgn.fgn(..., rng={SEED}, dtype=np.float32)`; peers on the first {n_peer} "
                f"series (nolds.dfa: {n_nolds_dfa})",
                f"generators: {n_paths} x 16384 at H = {H}"
                + ("" if n_fbm == n_paths else f" (fbm: {n_fbm} paths, extrapolated)"),
            ],
        )
    )
    estimators(n_series, n_peer, n_nolds_dfa, repeats)
    generators(n_paths, 16384, n_fbm, gen_repeats)
    C.emit(f"Load average at end (1, 5, 15 min): {C.load_average()}")


if __name__ == "__main__":
    main()
