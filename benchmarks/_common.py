"""Shared pieces of the benchmark scripts: run header, timing, memory and Markdown tables.

Used by ``benchmarks/accuracy.py`` and ``benchmarks/speed.py``; it does not import the peers.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent

# Make ``import peers`` work when a script is run as ``python benchmarks/<name>.py``.
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

PEER_PACKAGES = ("nolds", "MFDFA", "fathon", "hurst", "fbm", "stochastic")
BASE_PACKAGES = ("numpy", "scipy", "pandas")


# ------------------------------------------------------------------------------------ header


def _command() -> str:
    exe = Path(sys.executable)
    try:
        exe_s = str(exe.relative_to(Path.cwd()))
    except ValueError:
        exe_s = str(exe)
    script = Path(sys.argv[0])
    try:
        script_s = str(script.resolve().relative_to(Path.cwd()))
    except ValueError:
        script_s = str(script)
    return " ".join(shlex.quote(a) for a in [exe_s, script_s, *sys.argv[1:]])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision() -> str:
    """Short commit of the repository, and whether ``sgn_memory/`` differs from it."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "sgn_memory"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}" + (
        " + uncommitted changes in sgn_memory/" if dirty else " (sgn_memory/ clean)"
    )


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def header(title: str, *, extra: Sequence[str] = ()) -> str:
    """Markdown header: command, date, machine, load, versions, thread settings."""
    import numpy as np

    import sgn_memory
    import sgn_memory.hurst._common

    pkgs = ", ".join(f"{p} {_version(p)}" for p in (*BASE_PACKAGES, *PEER_PACKAGES))
    threads = ", ".join(
        f"{k}={os.environ.get(k, 'unset')}" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    )
    lines = [
        f"# {title}",
        "",
        f"- command: `{_command()}` (from the repository root)",
        f"- date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} CPUs ({_cpu_model()}), {_mem_total_gib()} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- load average at start (1, 5, 15 min): {load_average()}",
        f"- python {platform.python_version()}, numpy {np.__version__}, "
        f"sgn_memory {sgn_memory.__version__} (`sgn_memory.hurst._common._THREADS` = "
        f"{sgn_memory.hurst._common._THREADS}), git {git_revision()}",
        f"- packages: {pkgs}",
        f"- thread environment: {threads}",
        *(f"- {e}" for e in extra),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(
    fn: Callable[[], Any], repeats: int = 3, warmup: int = 0
) -> tuple[float, list[float]]:
    """Median wall-clock seconds over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[0] for _ in range(max(1, repeats))]
    return statistics.median(times), times


def cold_warm(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, float, list[float]]:
    """Time the first call on its own (cold: caches empty) and the median of the next calls."""
    cold, _ = timed(fn)
    warm, times = median_time(fn, repeats=repeats)
    return cold, warm, times


def traced_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of traced Python/numpy allocations during one call, above the level before it.

    numpy reports its array buffers to ``tracemalloc``; memory allocated inside C/C++ libraries
    without going through numpy (e.g. FFT or BLAS scratch space) is not seen.  Run this separately
    from timings: tracing slows allocation down.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
        del out
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, peak - before)


# ------------------------------------------------------------------------------------ output


def fmt_seconds(s: float) -> str:
    """Seconds with a unit that keeps 3 significant figures."""
    if s != s:  # NaN
        return "n/a"
    if s >= 100:
        return f"{s:.0f} s"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_speedup(x: float) -> str:
    if x != x:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}x"
    if x >= 10:
        return f"{x:.0f}x"
    return f"{x:.2g}x"


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of 'l', 'r', 'c' per column."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    ncol = len(headers)
    if any(len(r) != ncol for r in cells):
        raise ValueError("every row needs one cell per header")
    align = align or ("l" + "r" * (ncol - 1))
    widths = [max(3, *(len(r[j]) for r in cells)) for j in range(ncol)]

    def line(r):
        return (
            "| "
            + " | ".join(
                c.ljust(w) if a == "l" else c.rjust(w) if a == "r" else c.center(w)
                for c, w, a in zip(r, widths, align, strict=True)
            )
            + " |"
        )

    rule = {"l": ":{}", "r": "{}:", "c": ":{}:"}
    sep = (
        "| "
        + " | ".join(
            rule[a].format("-" * (w - 1 - (a == "c"))) for w, a in zip(widths, align, strict=True)
        )
        + " |"
    )
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def emit(text: str = "") -> None:
    """Print and flush (long runs show progress when piped)."""
    print(text, flush=True)


def progress(msg: str) -> None:
    """Progress to stderr, so stdout stays a clean Markdown document."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
