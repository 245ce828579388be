"""The one place where numerics move ``axis`` to the end and flatten leading axes.

Kernels only ever see a C-contiguous ``(batch, n)`` float array.  Public wrappers call
:func:`as_batch` once, the kernel, then :func:`unbatch` to give results the input's shape without
the time axis.  Degenerate series (non-finite, constant) are found here, once.
"""

from __future__ import annotations

import concurrent.futures
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import DegenerateSeriesWarning, InsufficientDataError


@dataclass(frozen=True)
class Batch:
    """A ``(batch, n)`` view of the input with what is needed to undo the reshape."""

    data: np.ndarray  # (batch, n), float32 or float64, C-contiguous
    lead_shape: tuple[int, ...]  # input shape without the time axis
    valid: np.ndarray  # (batch,) bool: finite and not constant

    @property
    def n(self) -> int:
        return self.data.shape[1]

    @property
    def all_valid(self) -> bool:
        return bool(self.valid.all())

    def valid_rows(self) -> np.ndarray:
        """The valid series only (no copy when every series is valid)."""
        return self.data if self.all_valid else self.data[self.valid]

    def scatter(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Place per-valid-series results (first axis) back into a full batch, NaN elsewhere."""
        values = np.asarray(values)
        if self.all_valid:
            return values
        out = np.full(
            (self.data.shape[0], *values.shape[1:]), fill, dtype=np.result_type(values, float)
        )
        out[self.valid] = values
        return out

    def unbatch(self, values: np.ndarray) -> np.ndarray:
        """Reshape ``(batch, *tail)`` results to ``(*lead_shape, *tail)``."""
        values = np.asarray(values)
        return values.reshape(self.lead_shape + values.shape[1:])


def float_dtype(x: np.ndarray) -> np.dtype:
    """float32 stays float32 (and float16 becomes float32); everything else computes in float64."""
    if x.dtype in (np.float32, np.float16):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_batch(x, axis: int = -1, *, min_length: int, estimator: str) -> Batch:
    """Validate ``x`` once and return it as a ``(batch, n)`` array.

    Raises :class:`InsufficientDataError` when the time axis is shorter than ``min_length`` (a
    usage error for the whole array); marks non-finite and constant series invalid and warns once.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{estimator} needs real numbers; got an array of dtype {x.dtype}.")
    if x.ndim == 0:
        raise InsufficientDataError(
            f"{estimator} needs a series (at least {min_length} observations); got a scalar."
        )
    if not -x.ndim <= axis < x.ndim:
        raise np.exceptions.AxisError(axis, x.ndim)
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n < min_length:
        raise InsufficientDataError(
            f"{estimator} needs at least {min_length} observations per series; got {n}."
        )
    lead_shape = x.shape[:-1]
    data = np.ascontiguousarray(x.reshape(-1, n), dtype=float_dtype(x))
    # max and min propagate NaN and show inf, so two reductions find every degenerate series
    high, low = data.max(axis=1), data.min(axis=1)
    valid = np.isfinite(high) & np.isfinite(low) & (high > low)
    n_bad = int(data.shape[0] - valid.sum())
    if n_bad:
        warnings.warn(
            f"{estimator}: {n_bad} of {data.shape[0]} series are constant or contain NaN/inf; "
            "their estimates are NaN.",
            DegenerateSeriesWarning,
            stacklevel=3,
        )
    return Batch(data=data, lead_shape=lead_shape, valid=valid)


def map_blocks(
    kernel: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    n_out: int,
    rows: int,
    *,
    threads: int,
) -> np.ndarray:
    """Apply ``kernel`` ((rows, n) -> (rows, n_out)) to blocks of ``rows`` series on ``threads``.

    numpy releases the GIL in its loops, so threads give a near-linear speed-up; blocks write
    disjoint rows of the output, and the result does not depend on the number of threads.
    """
    out = np.empty((x.shape[0], n_out))
    rows = max(1, int(rows))
    blocks = [(start, min(start + rows, x.shape[0])) for start in range(0, x.shape[0], rows)]

    def run(bounds):
        start, stop = bounds
        out[start:stop] = kernel(x[start:stop])

    if len(blocks) < 4 or threads < 2:
        for bounds in blocks:
            run(bounds)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, blocks))
    return out


def array_summary(a: np.ndarray) -> str:
    """Shape, median, range and NaN count of an array, for result reprs (never 10^5 numbers)."""
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return "empty"
    if a.size == 1:
        return f"{a.item():.4g}"
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return f"shape={a.shape}, all NaN"
    nan = f", {a.size - finite.size} NaN" if finite.size < a.size else ""
    return (
        f"shape={a.shape}, median={np.median(finite):.4g}, "
        f"range=[{finite.min():.4g}, {finite.max():.4g}]{nan}"
    )
