"""Result types, window scales, the log-log fit and the block thread pool of the estimators."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .._batch import Batch, map_blocks
from .._batch import array_summary as _summary
from ..errors import InsufficientDataError, SgnMemoryError

# Work in blocks of series so the per-scale temporaries stay in cache and memory stays bounded.
_BLOCK_ELEMENTS = 1 << 18
_OLS_STDERR = "OLS standard error of the log-log slope (ignores correlation between scales)"
# Threads for the block loop of R/S and DFA (numpy releases the GIL inside its loops).
_THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True, repr=False)
class HurstEstimate:
    """A batch of Hurst-exponent estimates with the data behind the fit.

    Attributes
    ----------
    hurst : numpy.ndarray
        Estimates, shape = input shape without the time axis (0-d for a single series).
    stderr : numpy.ndarray
        Standard error of each estimate; what it means is in ``settings["stderr"]``.
    method : str
        ``"rs"``, ``"rs-corrected"``, ``"dfa-<order>"`` or ``"whittle-fgn"``.
    scales : numpy.ndarray
        Window sizes used (R/S, DFA); empty for Whittle.
    fluctuation : numpy.ndarray
        Per-scale statistic, shape ``hurst.shape + (len(scales),)``: mean R/S (R/S) or the
        fluctuation function F(s) (DFA).  ``log(fluctuation)`` against ``log(scales)`` is the fitted
        line (for corrected R/S the line is fitted to ``log(fluctuation / expected_rs(scales))``).
    fit_range : tuple of float
        Smallest and largest scale in the fit (Whittle: lowest and highest Fourier frequency).
    intercept : numpy.ndarray
        Intercept of the log-log line (NaN for Whittle).
    n_obs : int
        Series length.
    settings : Mapping
        Every option that determined the number, including defaults that were chosen for you.
    """

    hurst: np.ndarray
    stderr: np.ndarray
    method: str
    scales: np.ndarray
    fluctuation: np.ndarray
    fit_range: tuple[float, float]
    intercept: np.ndarray
    n_obs: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"HurstEstimate(method={self.method!r}, n_obs={self.n_obs}, "
            f"hurst[{_summary(self.hurst)}], stderr[{_summary(self.stderr)}], "
            f"scales={len(self.scales)} in {self.fit_range})"
        )


@dataclass(frozen=True, repr=False)
class TestResult:
    """Result of a hypothesis test over a batch of series.

    Attributes
    ----------
    statistic, pvalue : numpy.ndarray
        One value per series (shape = input shape without the time axis).
    null_hypothesis, alternative : str
        In words.
    method : str
    reference : str
        Where the null distribution comes from.
    settings : Mapping
        Options, including data-driven choices (e.g. the bandwidth per series).
    """

    __test__ = False  # not a pytest test class

    statistic: np.ndarray
    pvalue: np.ndarray
    null_hypothesis: str
    alternative: str
    method: str
    reference: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"TestResult(method={self.method!r}, statistic[{_summary(self.statistic)}], "
            f"pvalue[{_summary(self.pvalue)}])\n  H0: {self.null_hypothesis}\n"
            f"  H1: {self.alternative}"
        )


@dataclass(frozen=True, repr=False)
class SurrogateBaseline:
    """An estimate next to the same estimator on time-shuffled copies of each series.

    Shuffling keeps the marginal distribution and destroys all temporal dependence, so the
    surrogate estimates show what the estimator reads on *this* data when there is no memory
    (e.g. uncorrected R/S reads about 0.54 on white noise of length 3000).

    Attributes
    ----------
    estimate : HurstEstimate
        The estimator on the original series.
    surrogates : numpy.ndarray
        Estimates on the shuffled copies, shape ``estimate.hurst.shape + (n_surrogates,)``.
    baseline, baseline_std : numpy.ndarray
        Mean and standard deviation of the surrogate estimates per series.
    excess : numpy.ndarray
        ``estimate.hurst - baseline``.
    pvalue : numpy.ndarray
        One-sided permutation p-value for "more memory than none":
        (1 + #{surrogate >= observed}) / (n_surrogates + 1).
    """

    estimate: HurstEstimate
    surrogates: np.ndarray
    baseline: np.ndarray
    baseline_std: np.ndarray
    excess: np.ndarray
    pvalue: np.ndarray
    n_surrogates: int

    @property
    def hurst(self) -> np.ndarray:
        return self.estimate.hurst

    def __repr__(self) -> str:
        return (
            f"SurrogateBaseline(method={self.estimate.method!r}, n_surrogates={self.n_surrogates}, "
            f"hurst[{_summary(self.hurst)}], baseline[{_summary(self.baseline)}], "
            f"excess[{_summary(self.excess)}])"
        )


def _log_scales(lo: int, hi: int, count: int) -> np.ndarray:
    """Distinct integers, log-spaced from lo to hi inclusive (fewer than count when crowded)."""
    if hi <= lo:
        return np.array([lo] if hi == lo else [], dtype=np.int64)
    return np.unique(np.round(np.geomspace(lo, hi, count)).astype(np.int64))


def rs_scales(n: int, *, min_scale: int = 10, max_fraction: float = 0.25, count: int = 20):
    """Default R/S window sizes: ``count`` log-spaced integers from ``min_scale`` to n/4.

    The default (10 to n/4, 20 sizes) keeps at least four non-overlapping windows at the largest
    scale and at least ten points per window at the smallest.
    """
    return _log_scales(min_scale, int(n * max_fraction), count)


def dfa_scales(
    n: int,
    *,
    order: int = 1,
    min_scale: int | None = None,
    max_fraction: float = 0.1,
    count: int = 20,
):
    """Default DFA window sizes: 20 log-spaced integers from ``4 * (order + 1)`` to ``n / 10``.

    Windows shorter than ~4 (order + 1) points are dominated by the detrending bias (the fitted
    polynomial absorbs most of the fluctuation), which bends the log-log line at small scales;
    windows longer than n/10 leave fewer than ten windows and add variance.  This range was chosen
    by a scan of exact fGn (n = 2048, H = 0.2 ... 0.95): it gives the lowest pooled RMSE with the
    bias kept below 0.02 for orders 1-3 (``benchmarks/accuracy.py``).
    """
    if min_scale is None:
        min_scale = 4 * (order + 1)
    return _log_scales(min_scale, int(n * max_fraction), count)


def _check_scales(scales, n: int, smallest: int, estimator: str) -> np.ndarray:
    s = np.asarray(scales)
    if s.ndim != 1 or s.size < 2 or s.dtype.kind not in "iuf" or not np.all(s == np.round(s)):
        raise SgnMemoryError(
            f"{estimator}: scales must be a 1-D sequence of at least two integers."
        )
    s = np.unique(s.astype(np.int64))
    if s.size < 2:
        raise SgnMemoryError(f"{estimator}: scales must hold at least two distinct window sizes.")
    if s[0] < smallest:
        raise SgnMemoryError(f"{estimator}: every scale must be at least {smallest}; got {s[0]}.")
    if s[-1] > n:
        raise InsufficientDataError(
            f"{estimator}: the largest scale ({s[-1]}) exceeds the series length ({n}); "
            f"use scales up to {n} or a longer series."
        )
    return s


def _default_scales(n: int, scale_fn, estimator: str) -> np.ndarray:
    """Default scales for length n; at least four, else an error naming the length needed."""
    s = scale_fn(n)
    if s.size < 4:
        need = next(m for m in range(n + 1, 100 * n + 1000) if scale_fn(m).size >= 4)
        raise InsufficientDataError(
            f"{estimator} needs at least {need} observations per series for its default scales; "
            f"got {n} (pass scales= explicitly to go lower)."
        )
    return s


def _loglog_fit(log_s: np.ndarray, log_f: np.ndarray):
    """OLS of log_f (batch, k) on log_s (k,), ignoring non-finite points per row.

    Returns slope, intercept and the OLS standard error of the slope (NaN with < 3 points).
    """
    finite = np.isfinite(log_f)
    if finite.all():
        x = log_s - log_s.mean()
        sxx = x @ x
        ybar = log_f.mean(axis=1)
        slope = (log_f @ x) / sxx
        intercept = ybar - slope * log_s.mean()
        resid = log_f - intercept[:, None] - slope[:, None] * log_s
        k = log_s.size
        with np.errstate(invalid="ignore", divide="ignore"):
            stderr = (
                np.sqrt((resid**2).sum(axis=1) / (k - 2) / sxx)
                if k > 2
                else np.full_like(slope, np.nan)
            )
        return slope, intercept, stderr
    w = finite.astype(float)
    y = np.where(finite, log_f, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = w.sum(axis=1)
        xbar = (w @ log_s) / k
        ybar = y.sum(axis=1) / k
        dx = (log_s[None, :] - xbar[:, None]) * w
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * (y - ybar[:, None])).sum(axis=1) / sxx
        intercept = ybar - slope * xbar
        resid = (y - intercept[:, None] - slope[:, None] * log_s) * w
        stderr = np.sqrt((resid**2).sum(axis=1) / (k - 2) / sxx)
        bad = k < 2
        slope[bad] = np.nan
        intercept[bad] = np.nan
        stderr[k < 3] = np.nan
    return slope, intercept, stderr


def _map_blocks(kernel: Callable[[np.ndarray], np.ndarray], x: np.ndarray, n_out: int, rows: int):
    """:func:`sgn_memory._batch.map_blocks` on this module's ``_THREADS`` threads."""
    return map_blocks(kernel, x, n_out, rows, threads=_THREADS)


def _finish_loglog(batch: Batch, s, fluct, *, correction, method, settings) -> HurstEstimate:
    log_s = np.log(s.astype(float))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_f = np.log(fluct)
    if correction is not None:
        log_f = log_f - correction
    slope, intercept, stderr = _loglog_fit(log_s, log_f)
    if correction is not None:
        slope = slope + 0.5
    return HurstEstimate(
        hurst=batch.unbatch(batch.scatter(slope)),
        stderr=batch.unbatch(batch.scatter(stderr)),
        method=method,
        scales=s,
        fluctuation=batch.unbatch(batch.scatter(fluct)),
        fit_range=(float(s[0]), float(s[-1])),
        intercept=batch.unbatch(batch.scatter(intercept)),
        n_obs=batch.n,
        settings=MappingProxyType(dict(settings)),
    )
