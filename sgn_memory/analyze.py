"""From saved gradient noise to tables: the battery of sgn_memory run per series, out of core.

Input: NoiseStores (directories), ``.npy``/``.npz`` arrays and CSV files, each holding
``steps x series`` (never unpickled).  Each series goes through the Hurst estimators with a
shuffled no-memory baseline, Lo's test, the Gaussianity battery, tail index and stable fit (and
optionally the stable goodness-of-fit test) and its autocorrelation; the store is read in blocks
of coordinates over the full time axis, so memory stays bounded by the block.  The result is an
:class:`Analysis`: a per-series table and a summary per layer and overall (pandas).
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from . import hurst as _hurst
from . import tails as _tails
from .errors import InsufficientDataError, SgnMemoryError, UsageError

SUMMARY_SCHEMA_VERSION = 1
_MIN_STEPS = 128  # the default battery (DFA/R/S scales, D'Agostino) needs at least this
_ESTIMATORS = {
    "rs": _hurst.hurst_rs,
    "dfa": _hurst.hurst_dfa,
    "whittle": _hurst.hurst_whittle,
}


# ============================================================================================
# inputs


@dataclass(frozen=True)
class Source:
    """One input: where it came from and how to read blocks of its series.

    ``layer`` and ``name`` label every series (for arrays: the column index as name, layer
    ``"all"``).  ``read(cols)`` returns ``(n_steps, len(cols))`` float arrays.
    """

    label: str
    kind: Literal["store", "npy", "npz", "csv", "array"]
    n_steps: int
    n_series: int
    name: np.ndarray
    layer: np.ndarray
    _data: Any = field(repr=False)
    scalars: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    steps: np.ndarray | None = field(default=None, repr=False)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)
    damage: tuple[str, ...] = ()  # bad chunks of a salvaged store, one sentence each
    salvaged: str = ""  # what a salvaged store's analysis kept, one sentence
    rows: tuple[int, int] | None = field(default=None, repr=False)  # a store's rows analysed

    def read(self, cols: np.ndarray) -> np.ndarray:
        if self.kind == "store":
            rows = slice(None) if self.rows is None else slice(*self.rows)
            values = self._data.read_noise(rows=rows, coords=np.asarray(cols))
            return np.asarray(values, dtype=np.float64)
        return np.asarray(self._data[:, cols], dtype=np.float64)


def _array_source(label: str, kind, array: np.ndarray) -> Source:
    array = np.asarray(array)
    if array.dtype.kind == "c":
        raise SgnMemoryError(f"{label}: holds complex numbers ({array.dtype}); give real values.")
    if array.dtype.kind not in "biuf":
        raise SgnMemoryError(f"{label}: holds {array.dtype} values, not numbers.")
    if array.ndim != 2:
        raise SgnMemoryError(
            f"{label}: needs a 2-D array of steps x series; got shape {array.shape} "
            "(reshape a single series to (n, 1))."
        )
    n, k = array.shape
    return Source(
        label=label,
        kind=kind,
        n_steps=n,
        n_series=k,
        name=np.array([str(j) for j in range(k)]),
        layer=np.full(k, "all"),
        _data=array,
    )


_NPY_MAGIC = b"\x93NUMPY"


def _load_error(err: ValueError, label: str, what: str) -> SgnMemoryError:
    """What ``np.load(..., allow_pickle=False)`` refusing a file means, in one sentence."""
    text = str(err).lower()
    if "pickle" in text or "object" in text:
        return SgnMemoryError(
            f"{label}: holds Python objects (pickled data), which are never loaded; save a "
            "numeric array."
        )
    return SgnMemoryError(f"{label}: a damaged {what} ({err}).")


def _load_npy(path: Path, label: str) -> np.ndarray:
    with path.open("rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise SgnMemoryError(
                f"{label}: not a .npy file (it does not start with NumPy's header)."
            )
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        raise _load_error(err, label, ".npy file") from None


def _load_npz(path: Path, label: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) == 1:
                return archive[names[0]]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise SgnMemoryError(f"{label}: not a readable .npz archive ({err}).") from None
    except ValueError as err:
        raise _load_error(err, label, ".npz archive") from None
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise SgnMemoryError(
        f"{label}: holds {len(names)} arrays ({shown}); save one steps x series array per .npz."
    )


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_NAN_TEXT = ["nan", "NaN", "NAN", "-nan", "+nan", "-NaN", "+NaN"]


def _locate_bad_cell(path: Path, label: str, options: dict, has_header: bool) -> None:
    """Raise naming the first cell of the CSV that is not a number (line and column)."""
    line = 1 + has_header
    try:
        reader = pd.read_csv(path, dtype=str, chunksize=20_000, **options)
        for chunk in reader:
            text = chunk.to_numpy(dtype=object)
            for j in range(text.shape[1]):
                cells = pd.Series(text[:, j], dtype=object).fillna("").astype(str).str.strip()
                numbers = pd.to_numeric(cells, errors="coerce").to_numpy(float)
                bad = np.isnan(numbers) & ~cells.isin(_NAN_TEXT).to_numpy()
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    cell = cells.iloc[i]
                    what = "is empty" if cell == "" else f"holds {cell[:30]!r}, not a number"
                    raise SgnMemoryError(
                        f"{label}: line {line + i}, column {j + 1} {what}; every cell "
                        f"{'below the header ' if has_header else ''}must be a number (nan for "
                        "a missing value)."
                    )
            line += len(text)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise SgnMemoryError(f"{label}: not a readable CSV file ({detail}).") from None


def _read_csv(path: Path, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A CSV of steps x series: the values and the header's names (None without a header).

    The first line alone decides whether there is a header (any cell of it that is not a
    number); the separator is the one of comma, semicolon or tab that the first line holds
    (whitespace when it holds none of them).  Every other cell must be a number (``nan``
    and ``inf`` included): the first that is not is named by line and column."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:  # a BOM is not a name
            first = f.readline().rstrip("\r\n")
    except UnicodeDecodeError:
        raise SgnMemoryError(f"{label}: not a text CSV file (it is not UTF-8).") from None
    unquoted = re.sub(r'"[^"]*"', "", first)  # a separator inside quotes is part of a name
    present = [d for d in (",", ";", "\t") if d in unquoted]
    if len(present) > 1:
        shown = " and ".join(repr(d) for d in present)
        raise SgnMemoryError(
            f"{label}: its first line holds both {shown}; save the CSV with one separator "
            "(a comma) and '.' as the decimal point."
        )
    sep = present[0] if present else (r"\s+" if len(first.split()) > 1 else ",")
    if sep == r"\s+":
        cells = first.split()
    else:
        cells = [c.strip() for c in next(csv.reader([first], delimiter=sep, quotechar='"'))]
    has_header = any(not _number(c) for c in cells)
    options = dict(
        sep=sep,
        header=None,
        skiprows=1 if has_header else 0,
        keep_default_na=False,
        skip_blank_lines=True,
        engine="python" if sep == r"\s+" else "c",
    )
    try:
        frame = pd.read_csv(path, dtype=np.float64, na_values=_NAN_TEXT, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())[:160]
        raise SgnMemoryError(f"{label}: not a readable CSV file ({detail}).") from None
    except ValueError:  # a cell that is not a number: find it (streamed, bounded memory)
        _locate_bad_cell(path, label, options, has_header)
        raise SgnMemoryError(f"{label}: not a readable CSV file of numbers.") from None
    if frame.shape[1] != len(cells):
        raise SgnMemoryError(
            f"{label}: its first line has {len(cells)} cells but the rows below have "
            f"{frame.shape[1]}; every line must have the same number of cells."
        )
    values = frame.to_numpy(dtype=np.float64)
    return values, (np.array(cells) if has_header else None)


def open_source(item, *, salvage: bool = False) -> Source:
    """Open one input: a NoiseStore directory, a ``.npy``/``.npz``/``.csv`` file, or an array.

    ``salvage``: open a damaged NoiseStore to analyse what is still readable (see
    :meth:`NoiseStore.open`); series touched by a bad chunk are NaN and excluded."""
    if isinstance(item, np.ndarray):
        return _array_source("array", "array", item)
    from .store import NoiseStore

    if isinstance(item, NoiseStore):
        return _store_source(item, str(item.path))
    if not isinstance(item, str | os.PathLike):
        raise SgnMemoryError(
            f"an input must be a path, a NoiseStore or a numpy array; got {type(item).__name__}."
        )
    path = Path(os.fspath(item))
    label = str(path)
    if not path.exists():
        raise SgnMemoryError(f"{label}: no such file or directory.")
    if path.is_dir():
        return _store_source(NoiseStore.open(path, salvage=salvage), label)
    if path.stat().st_size == 0:
        raise SgnMemoryError(f"{label}: the file is empty.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _array_source(label, "npy", _load_npy(path, label))
    if suffix == ".npz":
        return _array_source(label, "npz", _load_npz(path, label))
    if suffix == ".csv":
        values, header = _read_csv(path, label)
        source = _array_source(label, "csv", values)
        if header is not None:
            source = Source(**{**source.__dict__, "name": header})
        return source
    raise SgnMemoryError(
        f"{label}: unknown input; give a NoiseStore directory or a .npy, .npz or .csv file."
    )


def _salvage_plan(store) -> tuple[tuple[int, int] | None, str]:
    """What to analyse of a store with bad noise chunks: every row of the series no bad chunk
    touches, or every series over the longest stretch of rows no bad chunk touches, whichever
    keeps more values; returns the row range (None: all rows) and a sentence saying which."""
    bad = [b for b in store.damage if b.array == "noise"]
    n, k = store.n_complete, store.n_coords
    if not bad:
        return None, ""
    rows_per_chunk = store.chunk_shape[0]
    touched = np.zeros(k, dtype=bool)
    for b in bad:
        touched[b.columns[0] : b.columns[1] + 1] = True
    keep_series = n * int((~touched).sum())
    bad_rows = sorted({b.index[0] for b in bad})
    best, start = (0, 0), 0
    for i in [*bad_rows, math.ceil(n / rows_per_chunk)]:
        a, b = start * rows_per_chunk, min(i * rows_per_chunk, n)
        if b - a > best[1] - best[0]:
            best = (a, b)
        start = i + 1
    keep_rows = (best[1] - best[0]) * k
    if keep_rows > keep_series:
        return best, (
            f"rows {best[0]}-{best[1] - 1} of {n} of every series (the longest stretch no bad "
            f"chunk touches; excluding the {int(touched.sum())} series the bad chunks touch "
            "would keep fewer values)"
        )
    return None, (
        f"every row of the series no bad chunk touches ({int((~touched).sum())} of the store's "
        f"{k}; the others are excluded)"
    )


def _store_source(store, label: str) -> Source:
    coords = store.coordinates
    rows, salvaged = _salvage_plan(store)
    cut = slice(None) if rows is None else slice(*rows)
    return Source(
        label=label,
        kind="store",
        n_steps=store.n_complete if rows is None else rows[1] - rows[0],
        n_series=store.n_coords,
        name=np.array(
            [f"{p}[{i}]" for p, i in zip(coords.param_name, coords.flat_index, strict=True)]
        ),
        layer=np.asarray(coords.layer, dtype=str),
        _data=store,
        scalars={name: store.scalar(name)[cut] for name in store.scalar_names},
        steps=store.steps[cut],
        attrs=dict(store.attrs),
        damage=tuple(str(b) for b in store.damage),
        salvaged=salvaged,
        rows=rows,
    )


# ============================================================================================
# the per-series battery


def _acf(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelation at lags 1..lags of each row (biased estimator, as statsmodels)."""
    xc = x - x.mean(axis=1, keepdims=True)
    denom = np.einsum("ij,ij->i", xc, xc)
    out = np.empty((x.shape[0], lags))
    with np.errstate(invalid="ignore", divide="ignore"):  # constant series: NaN
        for k in range(1, lags + 1):
            out[:, k - 1] = np.einsum("ij,ij->i", xc[:, :-k], xc[:, k:]) / denom
    return out


def _battery(
    x: np.ndarray,
    *,
    preset: str | None,
    rng: np.random.Generator,
    acf_lags: int,
    stable_test: bool,
    n_bootstrap: int,
) -> dict[str, np.ndarray]:
    """All per-series statistics of a (series, steps) block, as named columns."""
    cols: dict[str, np.ndarray] = {}
    shuffled = rng.permuted(x, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degenerate series are NaN, counted later
        for key, estimator in _ESTIMATORS.items():
            options = {"preset": preset} if (key == "rs" and preset) else {}
            est = estimator(x, **options)
            cols[f"hurst_{key}"] = est.hurst
            cols[f"hurst_{key}_shuffled"] = estimator(shuffled, **options).hurst
            if key == "whittle":
                cols["hurst_whittle_se"] = est.stderr
        lo = _hurst.long_memory_test(x)
        cols["lo_statistic"], cols["lo_pvalue"] = lo.statistic, lo.pvalue
        g = _tails.gaussianity(x)
        for t in g.tests:
            cols[f"gauss_{t}_pvalue"] = g.pvalue[t]
        cols["tail_index"] = _tails.tail_index(x).alpha
        fit = _tails.fit_stable(x)
        cols["stable_alpha"], cols["stable_beta"] = fit.alpha, fit.beta
        cols["stable_scale"], cols["stable_loc"] = fit.scale, fit.loc
        if stable_test:
            st = _tails.stable_test(x, n_bootstrap=n_bootstrap, rng=rng)
            cols["stable_pvalue"] = st.pvalue
            cols["stable_alpha_drift"] = st.aggregation_drift
        with np.errstate(all="ignore"):  # inf/NaN series: NaN, counted as excluded
            acf = _acf(x, acf_lags)
            cols["mean"], cols["std"] = x.mean(axis=1), x.std(axis=1, ddof=1)
    for k in range(acf_lags):
        cols[f"acf_{k + 1}"] = acf[:, k]
    return cols


def window_starts(n_steps: int, window: int | None) -> tuple[int, list[int]]:
    """Window length and start indices of the over-training statistics.

    Default (``window=None``): a quarter of the series with half-overlapping windows (7
    windows) when the series has at least 2048 steps, none otherwise.  ``window=0`` turns them
    off.
    """
    if window is None:
        window = n_steps // 4 if n_steps >= 2048 else 0
    window = int(window)
    if window <= 0:
        return 0, []
    if window < _MIN_STEPS or window > n_steps:
        raise SgnMemoryError(
            f"window must lie between {_MIN_STEPS} and the series length {n_steps}; got {window}."
        )
    stride = max(1, window // 2)
    return window, list(range(0, n_steps - window + 1, stride))


def _window_stats(x: np.ndarray, window: int, starts: list[int]) -> np.ndarray:
    """(series, windows, 2): Whittle H and Mohammadi tail index in each window."""
    out = np.empty((x.shape[0], len(starts), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, a in enumerate(starts):
            seg = x[:, a : a + window]
            out[:, j, 0] = _hurst.hurst_whittle(seg).hurst
            out[:, j, 1] = _tails.tail_index(seg).alpha
    return out


def _blocks(source: Source, cols: np.ndarray, block: int) -> list[np.ndarray]:
    """Blocks of at most ``block`` of the (sorted) columns.  For a store they never cross a
    noise chunk boundary, so a random subset still reads every chunk once, not once per block."""
    if source.kind == "store":
        width = int(source._data.chunk_shape[1])
        groups = np.split(cols, np.flatnonzero(np.diff(cols // width)) + 1)
    else:
        groups = [cols]
    return [g[i : i + block] for g in groups if g.size for i in range(0, g.size, block)]


def _block_job(source, chosen, block_seed, options, w_len, w_starts):
    """The battery (and the windows) on one block of series; runs locally or on a worker."""
    if isinstance(source, tuple):  # a NoiseStore shipped to a Dask worker: path and damage
        from .store import NoiseStore

        path, damage = source
        source = _store_source(NoiseStore._open_known_damage(path, damage), path)
    x = np.ascontiguousarray(source.read(np.asarray(chosen)).T)
    stats = _battery(x, rng=np.random.default_rng(block_seed), **options)
    with np.errstate(invalid="ignore", over="ignore"):
        # what counts as analysed: finite throughout and not constant (else every statistic
        # is NaN and the series is in no fraction)
        stats["usable"] = np.isfinite(x).all(axis=1) & (np.ptp(x, axis=1) > 0)
    win = _window_stats(x, w_len, w_starts) if w_starts else None
    return stats, win


def _remote_source(source: Source):
    """What to ship to Dask workers: a store's path and known bad chunks (workers reopen it
    without re-verifying it), else the source."""
    if source.kind != "store":
        return source
    return os.path.abspath(source._data.path), tuple(source._data.damage)


def _dask_client(scheduler):
    try:
        from dask.distributed import Client
    except ImportError:
        raise SgnMemoryError(
            "a scheduler was given but Dask is not installed: pip install 'dask[distributed]'."
        ) from None
    if hasattr(scheduler, "scheduler_address"):  # a LocalCluster or similar object
        return Client(scheduler)
    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(str(scheduler), timeout="10s")
    except OSError as err:
        raise SgnMemoryError(f"cannot reach the Dask scheduler at {scheduler}: {err}.") from None
    except (ValueError, TypeError) as err:
        detail = " ".join(str(err).split())[:120]
        raise UsageError(
            f"{scheduler!r} is not a Dask scheduler address such as tcp://host:8786 ({detail})."
        ) from None


# ============================================================================================
# summaries


def _excess_ci(diff: np.ndarray) -> tuple[float, float, float]:
    """Mean of H - baseline over series and a 95% t-interval (series treated as independent)."""
    from scipy import stats

    d = diff[np.isfinite(diff)]
    if d.size < 2:
        return float("nan"), float("nan"), float("nan")
    m, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    half = float(stats.t.ppf(0.975, d.size - 1)) * se
    return m, m - half, m + half


def _summarise(table: pd.DataFrame, level: float, preset: str | None) -> dict[str, Any]:
    usable = int(table["usable"].sum()) if "usable" in table else len(table)
    out: dict[str, Any] = {
        "n_series": len(table),
        "n_analysed": usable,
        "n_excluded": len(table) - usable,
    }
    for key in _ESTIMATORS:
        h, base = table[f"hurst_{key}"].to_numpy(), table[f"hurst_{key}_shuffled"].to_numpy()
        fin = h[np.isfinite(h)]
        out[f"hurst_{key}_median"] = float(np.median(fin)) if fin.size else float("nan")
        out[f"hurst_{key}_iqr"] = (
            float(np.subtract(*np.percentile(fin, [75, 25]))) if fin.size else float("nan")
        )
        out[f"hurst_{key}_mean"] = float(fin.mean()) if fin.size else float("nan")
        fb = base[np.isfinite(base)]
        out[f"hurst_{key}_baseline_mean"] = float(fb.mean()) if fb.size else float("nan")
        m, lo, hi = _excess_ci(h - base)
        out[f"hurst_{key}_excess"], out[f"hurst_{key}_excess_ci"] = m, [lo, hi]
    if preset == "tan2021":
        out["tan2021_mean_hurst"], out["tan2021_kept"] = _hurst.tan2021_mean_hurst(
            table["hurst_rs"].to_numpy()
        )
    tests = [c for c in table.columns if c.endswith("_pvalue")]
    for c in tests:
        p = table[c].to_numpy()
        m = int(np.isfinite(p).sum())
        name = c.removesuffix("_pvalue")
        out[f"{name}_rejected"] = float((p <= level).sum() / m) if m else float("nan")
        out[f"{name}_rejected_bh"] = (
            float(_tails.benjamini_hochberg(p, level).sum() / m) if m else float("nan")
        )
    for c in ("tail_index", "stable_alpha"):
        v = table[c].to_numpy()
        v = v[np.isfinite(v)]
        out[f"{c}_median"] = float(np.median(v)) if v.size else float("nan")
    acf1 = table["acf_1"].to_numpy()
    acf1 = acf1[np.isfinite(acf1)]
    out["acf_1_median"] = float(np.median(acf1)) if acf1.size else float("nan")
    return out


# ============================================================================================
# public


@dataclass(frozen=True, repr=False)
class Analysis:
    """The battery's results for one or more inputs.

    Attributes
    ----------
    series : pandas.DataFrame
        One row per analysed series: ``run``, ``layer``, ``name``, ``column`` and every
        statistic (Hurst by R/S, DFA, Whittle and their shuffled baselines, Lo's test,
        Gaussianity p-values, tail index, stable fit, autocorrelation, mean, std).
    summary : pandas.DataFrame
        One row per (run, layer) and per run overall (``layer == "(all)"``): medians, IQR,
        H minus its shuffled baseline with a 95% interval, fractions rejected raw and after
        Benjamini-Hochberg at ``level``, tail-index and stable-alpha medians.
    runs : pandas.DataFrame
        The overall rows only, one per input: the comparison across runs.
    over_training : pandas.DataFrame
        Per run and window of steps (see :func:`window_starts`): median and quartiles over
        series of the Whittle H, and the median tail index, with the window's first and last
        step.  Empty when the series are too short or ``window=0``.
    per_step : pandas.DataFrame
        The per-step scalars of NoiseStore inputs (loss, lr, gradient-noise scale B_simple,
        ...), with the run and the step.
    settings : dict
    """

    series: pd.DataFrame
    summary: pd.DataFrame
    runs: pd.DataFrame
    over_training: pd.DataFrame
    per_step: pd.DataFrame
    settings: dict[str, Any]
    sources: tuple[Source, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Analysis({len(self.runs)} run(s), {len(self.series)} series, "
            f"columns={len(self.series.columns)})"
        )


def analyze(
    inputs,
    *,
    preset: Literal["tan2021"] | None = None,
    max_coords: int | None = None,
    seed: int = 0,
    block: int = 1024,
    level: float = 0.05,
    acf_lags: int = 10,
    stable_test: bool = False,
    n_bootstrap: int = 100,
    window: int | None = None,
    scheduler=None,
    progress=None,
    salvage: bool = False,
) -> Analysis:
    """Run the battery on every series of one or more inputs.

    Parameters
    ----------
    inputs : path, array, NoiseStore, or a sequence of them
        NoiseStore directories, ``.npy``/``.npz``/``.csv`` files (steps x series) or arrays.
        Several inputs give one summary row per run (a comparison).
    preset : {"tan2021"}, optional
        The seed authors' protocol for R/S (their windows, uncorrected); the summary then also
        reports their statistic: the mean of H over series with 0.01 <= H <= 0.99.
    max_coords : int, optional
        Analyse a seeded random subset of at most this many series per input.
    seed : int
        Seeds the subset, the shuffled baselines and the bootstrap (one stream per block).
    block : int
        Series read and analysed at once (memory ~ block x steps x 8 bytes x a few).
    level : float
        Level of the rejection fractions (and the Benjamini-Hochberg FDR).
    acf_lags : int
        Autocorrelation lags stored per series.
    stable_test : bool
        Also run :func:`sgn_memory.stable_test` (parametric bootstrap; slow for many series).
    n_bootstrap : int
        Its bootstrap draws per (alpha, beta) cell.
    window : int, optional
        Steps per window of the over-training statistics (default: see :func:`window_starts`;
        0: none).
    scheduler : str, dask.distributed.Client or LocalCluster, optional
        Spread the blocks over a Dask cluster (an address such as ``"tcp://host:8786"``);
        default: in process.  Workers reopen NoiseStores by path, so the path must be visible
        to them.  Results are identical either way (every block has its own seed).
    progress : callable, optional
        Called with (series done, series total) after each block.
    salvage : bool
        Analyse damaged NoiseStores anyway (:meth:`NoiseStore.open` with ``salvage=True``):
        series touched by a missing or damaged chunk are excluded (``n_excluded``) and the bad
        chunks are listed in ``Analysis.sources[i].damage`` and in summary.json.  Off by
        default: a damaged store is an error.

    Raises
    ------
    UsageError
        A setting out of range (one sentence naming it).
    InsufficientDataError
        An input too short for the battery, or none of whose series could be analysed (all
        constant or holding NaN/inf).

    Notes
    -----
    The 95% interval of H minus its baseline treats series as independent; coordinates of one
    network are correlated, so read it as a lower bound on the uncertainty.  Series that are
    constant or hold NaN/inf get NaN statistics and count in no fraction.
    """
    if isinstance(inputs, (str, os.PathLike, np.ndarray)) or not isinstance(inputs, Sequence):
        inputs = [inputs]
    if not inputs:
        raise UsageError("analyze needs at least one input.")
    _check_settings(
        preset=preset,
        max_coords=max_coords,
        seed=seed,
        block=block,
        level=level,
        acf_lags=acf_lags,
        n_bootstrap=n_bootstrap,
        window=window,
    )
    sources = tuple(open_source(item, salvage=salvage) for item in inputs)
    for s in sources:
        if s.n_steps < _MIN_STEPS:
            raise InsufficientDataError(
                f"{s.label}: {s.n_steps} steps; the battery needs at least {_MIN_STEPS}."
            )
        if s.n_series == 0:
            raise SgnMemoryError(f"{s.label}: holds no series.")
    total = sum(min(s.n_series, max_coords or s.n_series) for s in sources)
    done = 0
    frames, summaries, windows, scalar_frames = [], [], [], []
    labels = _run_labels(sources)
    options = dict(
        preset=preset, acf_lags=acf_lags, stable_test=stable_test, n_bootstrap=n_bootstrap
    )
    client = _dask_client(scheduler) if scheduler is not None else None
    for r, (run, s) in enumerate(zip(labels, sources, strict=True)):
        cols = np.arange(s.n_series)
        if max_coords is not None and max_coords < s.n_series:
            subset = np.random.default_rng([seed, r, 0])
            cols = np.sort(subset.choice(s.n_series, size=int(max_coords), replace=False))
        w_len, w_starts = window_starts(s.n_steps, window)
        # every block has its own seed (seed, run, block): results do not depend on where or
        # in which order the blocks run (in process or on a Dask cluster)
        jobs = [(chosen, [seed, r, 1 + j]) for j, chosen in enumerate(_blocks(s, cols, int(block)))]
        if client is None:
            results = []
            for chosen, block_seed in jobs:
                results.append(_block_job(s, chosen, block_seed, options, w_len, w_starts))
                done += chosen.size
                if progress is not None:
                    progress(done, total)
        else:
            remote = _remote_source(s)
            futures = [
                client.submit(
                    _block_job, remote, chosen, block_seed, options, w_len, w_starts, pure=False
                )
                for chosen, block_seed in jobs
            ]
            results = client.gather(futures)
            done += cols.size
            if progress is not None:
                progress(done, total)
        parts, window_parts = [], []
        for (chosen, _), (stats, win) in zip(jobs, results, strict=True):
            part = pd.DataFrame(stats)
            part.insert(0, "column", chosen)
            part.insert(0, "name", s.name[chosen])
            part.insert(0, "layer", s.layer[chosen])
            part.insert(0, "run", run)
            parts.append(part)
            if win is not None:
                window_parts.append(win)
        table = pd.concat(parts, ignore_index=True)
        if not table["usable"].any():
            what = "every one is constant or holds NaN/inf values"
            if s.damage:
                what += f", or lies in one of its {len(s.damage)} unreadable chunks"
            raise InsufficientDataError(
                f"{s.label}: none of its {len(table)} series could be analysed ({what})."
            )
        frames.append(table)
        if w_starts:
            values = np.concatenate(window_parts, axis=0)
            steps = s.steps if s.steps is not None else np.arange(s.n_steps)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
                med = np.nanmedian(values, axis=0)
                q25, q75 = np.nanpercentile(values[:, :, 0], [25, 75], axis=0)
            windows.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "start_step": steps[w_starts],
                        "end_step": steps[[a + w_len - 1 for a in w_starts]],
                        "hurst_whittle_median": med[:, 0],
                        "hurst_whittle_q25": q25,
                        "hurst_whittle_q75": q75,
                        "tail_index_median": med[:, 1],
                    }
                )
            )
        if s.scalars:
            scal = pd.DataFrame(
                {"run": run, "step": s.steps, **{k: v for k, v in s.scalars.items()}}
            )
            scalar_frames.append(scal)
        for layer, group in [("(all)", table), *table.groupby("layer", sort=True)]:
            summaries.append({"run": run, "layer": layer, **_summarise(group, level, preset)})
    series = pd.concat(frames, ignore_index=True)
    over_training = pd.concat(windows, ignore_index=True) if windows else pd.DataFrame()
    per_step = pd.concat(scalar_frames, ignore_index=True) if scalar_frames else pd.DataFrame()
    summary = pd.DataFrame(summaries)
    runs = summary[summary["layer"] == "(all)"].reset_index(drop=True)
    return Analysis(
        series=series,
        summary=summary,
        runs=runs,
        over_training=over_training,
        per_step=per_step,
        settings={
            "preset": preset,
            "max_coords": max_coords,
            "seed": seed,
            "block": int(block),
            "level": level,
            "acf_lags": acf_lags,
            "stable_test": stable_test,
            "n_bootstrap": n_bootstrap,
            "window": window,
            "scheduler": None
            if scheduler is None
            else str(getattr(scheduler, "scheduler_address", scheduler)),
            "salvage": bool(salvage),
            "baseline": "each estimator on one time-shuffled copy of each series",
            "schema_version": SUMMARY_SCHEMA_VERSION,
        },
        sources=sources,
    )


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _check_settings(*, preset, max_coords, seed, block, level, acf_lags, n_bootstrap, window):
    """Every setting of :func:`analyze` in range, or one sentence naming the first that is not."""
    if preset not in (None, "tan2021"):
        raise UsageError(f"preset must be 'tan2021' or None; got {preset!r}.")
    if max_coords is not None and (not _is_int(max_coords) or max_coords < 1):
        raise UsageError(f"max_coords must be a positive integer or None; got {max_coords!r}.")
    if not _is_int(seed) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer; got {seed!r}.")
    if not _is_int(block) or block < 1:
        raise UsageError(f"block must be a positive integer; got {block!r}.")
    if isinstance(level, bool) or not isinstance(level, int | float | np.floating):
        raise UsageError(f"level must be a number strictly between 0 and 1; got {level!r}.")
    if not 0 < level < 1:
        raise UsageError(f"level must lie strictly between 0 and 1; got {level!r}.")
    if not _is_int(acf_lags) or acf_lags < 1:
        raise UsageError(f"acf_lags must be a positive integer; got {acf_lags!r}.")
    if not _is_int(n_bootstrap) or n_bootstrap < 1:
        raise UsageError(f"n_bootstrap must be a positive integer; got {n_bootstrap!r}.")
    if window is not None and (not _is_int(window) or window < 0):
        raise UsageError(f"window must be a non-negative integer or None; got {window!r}.")


def _run_labels(sources: Sequence[Source]) -> list[str]:
    labels = [Path(s.label).name or s.label for s in sources]
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab}#{seen[lab]}")
    return out


def iter_blocks(source: Source, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(columns, (series, steps) array) blocks of a source, for custom analyses."""
    for start in range(0, source.n_series, block):
        cols = np.arange(start, min(start + block, source.n_series))
        yield cols, np.ascontiguousarray(source.read(cols).T)


__all__ = ["Analysis", "Source", "analyze", "iter_blocks", "open_source", "window_starts"]


class _CallableModule(type(sys.modules[__name__])):
    """Importing this module makes ``sgn_memory.analyze`` the module (import machinery), while
    the public name is the function (``sgn.analyze(...)``, kept lazy so that ``import sgn_memory``
    does not import pandas): calling the module calls the function."""

    def __call__(self, *args, **kwargs):
        return analyze(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
