"""Write and read speed of the NoiseStore (zarr v3 on the local disk).

Run from the repository root:

    .venv/bin/python benchmarks/store_io.py > benchmarks/results/store_io.md
    .venv/bin/python benchmarks/store_io.py --quick      # smoke run, fewer rows

For k = 10^4 and 10^5 coordinates (float32 rows of 40 kB and 400 kB), with the default chunking
(``default_chunk_rows(k)`` rows per block, ~4 MiB chunks):

- saturated append: ``append`` one row at a time as fast as possible, then ``close``; throughput
  is end to end (every row on disk and counted in ``n_complete``).  The writer thread cannot keep
  up with a caller that does nothing else, so ``append`` calls also wait for it here (bounded
  queue): their mean is the disk-bound cost per row.
- paced append, a training loop stand-in: between appends the caller sleeps (a training step
  releases the GIL in torch's kernels much the same way) for twice the disk-bound time per row, so
  the writer keeps up.  The time ``append`` holds the caller is then the in-memory copy only.
- read: ``iter_coord_blocks`` over the whole store (every coordinate, full time axis) with the
  default block (one column of chunks) and with a block width that is not a multiple of the chunk
  width (chunks at block edges are read twice); a narrow ``read_noise`` of 100 coordinates over
  the full time axis; one scalar (median of 3 after a warm-up pass).  The store was just written,
  so reads come from the page cache.

Rows are drawn once (64 float32 rows, reused), so the timings are the store's alone.  The full
run takes about a minute and writes ~0.8 GB to a temporary directory (deleted at the end).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import _common as C
import numpy as np

from sgn_memory.store import MAX_PENDING_BLOCKS, CoordinateMap, NoiseStore

SEED = 20250301
K_VALUES = (10**4, 10**5)
N_ROWS = {10**4: 8192, 10**5: 1024}  # saturated writes: 330 MB and 410 MB of noise
N_PACED = {10**4: 1024, 10**5: 256}


def coordinates(k: int) -> CoordinateMap:
    layer = np.array([f"layer{i % 20}.conv" for i in range(k)])
    return CoordinateMap(np.char.add(layer, ".weight"), np.arange(k) // 20, layer)


def saturated(path: Path, k: int, n: int, pool: np.ndarray) -> dict:
    calls = np.empty(n)
    t0 = time.perf_counter()
    store = NoiseStore.create(path, coordinates=coordinates(k))
    for t in range(n):
        a = time.perf_counter()
        store.append(pool[t % len(pool)], step=t, scalars={"loss": 1.0, "lr": 0.1})
        calls[t] = time.perf_counter() - a
    t_append = time.perf_counter() - t0
    store.close()
    total = time.perf_counter() - t0
    assert store.n_complete == n
    return {
        "chunks": store.chunk_shape,
        "rows_s": n / total,
        "mb_s": n * k * 4 / total / 1e6,
        "mean_call": calls.mean(),
        "median_call": float(np.median(calls)),
        "close": total - t_append,
    }


def paced(path: Path, k: int, n: int, pool: np.ndarray, interval: float) -> np.ndarray:
    calls = np.empty(n)
    with NoiseStore.create(path, coordinates=coordinates(k)) as store:
        for t in range(n):
            time.sleep(interval)  # the training step
            a = time.perf_counter()
            store.append(pool[t % len(pool)], step=t, scalars={"loss": 1.0, "lr": 0.1})
            calls[t] = time.perf_counter() - a
    return calls


def read(path: Path) -> dict:
    store = NoiseStore.open(path)
    nbytes = store.n_complete * store.n_coords * 4
    out = {}
    for label, block in (("default", None), ("odd", 1000)):

        def one_pass(block=block):
            seen = sum(data.nbytes for _, data in store.iter_coord_blocks(block))
            assert seen == nbytes

        out[label] = nbytes / C.median_time(one_pass, repeats=3, warmup=1)[0] / 1e6
    t_narrow, _ = C.median_time(lambda: store.read_noise(coords=slice(0, 100)), repeats=3)
    t_scalar, _ = C.median_time(lambda: store.scalar("loss"), repeats=3)
    out["narrow"], out["scalar"], out["width"] = t_narrow, t_scalar, store.chunk_shape[1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the rows")
    args = parser.parse_args()
    scale = 4 if args.quick else 1
    t_start = time.perf_counter()
    C.emit(
        C.header(
            "NoiseStore write and read speed",
            extra=[
                f"store: zarr v3, local disk ({tempfile.gettempdir()}), noise uncompressed, "
                f"`MAX_PENDING_BLOCKS` = {MAX_PENDING_BLOCKS}",
                "rows: float32, one `append` call per row with two scalars (loss, lr)",
            ],
        )
    )
    write_rows, paced_rows, read_rows = [], [], []
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="store_io_") as tmp:
        for k in K_VALUES:
            pool = rng.standard_normal((64, k)).astype(np.float32)
            n = N_ROWS[k] // scale
            C.progress(f"k = {k}: saturated append of {n} rows")
            path = Path(tmp) / f"k{k}"
            w = saturated(path, k, n, pool)
            memory = (MAX_PENDING_BLOCKS + 2) * w["chunks"][0] * k * 4
            write_rows.append(
                [
                    f"{k:,}",
                    f"{w['chunks'][0]} x {w['chunks'][1]:,} "
                    f"({w['chunks'][0] * w['chunks'][1] * 4 / 2**20:.1f} MiB)",
                    f"{n:,}",
                    f"{w['rows_s']:,.0f}",
                    f"{w['mb_s']:,.0f}",
                    C.fmt_seconds(w["median_call"]),
                    C.fmt_seconds(w["mean_call"]),
                    C.fmt_seconds(w["close"]),
                    f"{memory / 2**20:.0f} MiB",
                ]
            )
            C.progress(f"k = {k}: read")
            r = read(path)
            read_rows.append(
                [
                    f"{k:,}",
                    f"{n:,}",
                    f"{r['default']:,.0f} MB/s",
                    f"{r['odd']:,.0f} MB/s",
                    C.fmt_seconds(r["narrow"]),
                    C.fmt_seconds(r["scalar"]),
                ]
            )
            interval = 2 * n / w["rows_s"] / n  # twice the disk-bound time per row
            m = N_PACED[k] // scale
            C.progress(f"k = {k}: paced append of {m} rows, one every {interval * 1e3:.2f} ms")
            calls = paced(Path(tmp) / f"paced{k}", k, m, pool, interval)
            paced_rows.append(
                [
                    f"{k:,}",
                    f"{m:,}",
                    f"{1 / interval:,.0f} rows/s",
                    C.fmt_seconds(float(np.median(calls))),
                    C.fmt_seconds(float(np.percentile(calls, 99))),
                    C.fmt_seconds(float(calls.max())),
                    C.fmt_seconds(float(calls.mean())),
                ]
            )

    C.emit("## Append throughput (saturated: the caller does nothing but append)")
    C.emit()
    C.emit(
        C.markdown_table(
            [
                "k",
                "noise chunk",
                "rows",
                "rows/s",
                "MB/s",
                "append call, median",
                "append call, mean (incl. waits)",
                "close()",
                "writer memory bound",
            ],
            write_rows,
        )
    )
    C.emit()
    C.emit(
        "Throughput is end to end: from `create` to `close` returning, every row on disk and "
        "counted in `n_complete`. The mean `append` call includes the waits for the writer "
        "thread once it is `MAX_PENDING_BLOCKS` blocks behind; the writer memory bound is "
        "`(MAX_PENDING_BLOCKS + 2) * chunk_rows * k * 4` bytes."
    )
    C.emit()
    C.emit("## Time append() holds the caller, at a rate the disk sustains")
    C.emit()
    C.emit(
        C.markdown_table(
            ["k", "rows", "append rate", "median", "p99", "max", "mean"],
            paced_rows,
        )
    )
    C.emit()
    C.emit(
        "The caller sleeps between appends (a stand-in for a training step) for twice the "
        "disk-bound time per row. The median is the copy of one row into the buffer (and the "
        "check of its shape and scalars); the tail is mostly the caller waiting for the GIL "
        "while the writer thread runs zarr's Python code."
    )
    C.emit()
    C.emit("## Read throughput")
    C.emit()
    C.emit(
        C.markdown_table(
            [
                "k",
                "rows",
                "`iter_coord_blocks()` (chunk width)",
                "`iter_coord_blocks(1000)`",
                "`read_noise(coords=slice(0, 100))`",
                "`scalar('loss')`",
            ],
            read_rows,
        )
    )
    C.emit()
    C.emit(
        "Each pass reads every coordinate over the full time axis, one block in memory at a "
        "time. Reads follow the writes, so the chunks come from the page cache, not the disk."
    )
    C.emit()
    C.emit(f"Total run time: {math.ceil(time.perf_counter() - t_start)} s.")


if __name__ == "__main__":
    main()
