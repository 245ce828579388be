"""Hurst-exponent estimators and long-memory tests for increment (fGn-like) series.

Every estimator takes *increments* (the noise itself, not its running sum), is vectorised along
``axis`` over any leading shape, is deterministic, and returns a :class:`HurstEstimate`.  White
noise has H = 1/2; H > 1/2 is persistent (long memory), H < 1/2 anti-persistent.

- :func:`hurst_rs`      rescaled range (R/S), Anis-Lloyd-Peters corrected by default
- :func:`hurst_dfa`     detrended fluctuation analysis of order 1-3
- :func:`hurst_whittle` Whittle maximum likelihood for fGn, with a Fisher-information standard error
- :func:`long_memory_test`  Lo's modified R/S test of "no long memory"
- :func:`shuffled_baseline` the same estimator on time-shuffled copies: the no-memory baseline

References
----------
1. H. E. Hurst, "Long-term storage capacity of reservoirs", Trans. Am. Soc. Civ. Eng. 116 (1951).
2. A. A. Anis and E. H. Lloyd, "The expected value of the adjusted rescaled Hurst range of
   independent normal summands", Biometrika 63 (1976) 111-116.
3. E. E. Peters, "Fractal Market Analysis", Wiley (1994), eq. (5.6).
4. C.-K. Peng et al., "Mosaic organization of DNA nucleotides", Phys. Rev. E 49 (1994) 1685.
5. J. W. Kantelhardt et al., "Detecting long-range correlations with detrended fluctuation
   analysis", Physica A 295 (2001) 441-454.
6. R. Fox and M. S. Taqqu, "Large-sample properties of parameter estimates for strongly
   dependent stationary Gaussian time series", Ann. Statist. 14 (1986) 517-532.
7. J. Beran, "Statistics for Long-Memory Processes", Chapman & Hall (1994), ch. 5-6.
8. A. W. Lo, "Long-term memory in stock market prices", Econometrica 59 (1991) 1279-1313.
9. D. W. K. Andrews, "Heteroskedasticity and autocorrelation consistent covariance matrix
   estimation", Econometrica 59 (1991) 817-858.
10. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
    networks", arXiv:2105.02062.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import scipy.fft
import scipy.special

from ._batch import Batch, as_batch, map_blocks
from ._batch import array_summary as _summary
from .errors import DegenerateSeriesWarning, InsufficientDataError, SgnMemoryError

__all__ = [
    "TAN2021_RS_SCALES",
    "HurstEstimate",
    "SurrogateBaseline",
    "TestResult",
    "dfa_scales",
    "expected_rs",
    "hurst_dfa",
    "hurst_rs",
    "hurst_whittle",
    "long_memory_test",
    "rs_scales",
    "shuffled_baseline",
]

#: Window sizes of the seed authors' R/S protocol (Tan, Zhang & Liu; nolds-style, uncorrected).
TAN2021_RS_SCALES = (50, 60, 72, 86, 103, 124, 149, 179, 214, 257, 309, 371, 445)

# Work in blocks of series so the per-scale temporaries stay in cache and memory stays bounded.
_BLOCK_ELEMENTS = 1 << 18
_OLS_STDERR = "OLS standard error of the log-log slope (ignores correlation between scales)"
# Threads for the block loop of R/S and DFA (numpy releases the GIL inside its loops).
_THREADS = min(8, os.cpu_count() or 1)
# Below this window size R/S takes its running max/min window-position by window-position.
_RS_LOOP_MAX_SCALE = 32
# R/S works time-major on blocks of up to 256 series of at most this many elements ...
_RS_BLOCK_ELEMENTS = 1 << 19
# ... unless fewer than this many series fit (long series): then series-major.
_RS_MIN_ROWS = 32


# ============================================================================================
# results


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


# ============================================================================================
# scales and the log-log fit


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


# ============================================================================================
# R/S


def expected_rs(scales) -> np.ndarray:
    """Anis-Lloyd-Peters expected R/S of n independent Gaussian values.

    E[R/S]_n = (n - 1/2)/n * Gamma((n-1)/2) / (sqrt(pi) Gamma(n/2)) * sum_{i=1}^{n-1} sqrt((n-i)/i),
    evaluated with log-gamma for every n (nolds switches to the asymptotic 1/sqrt(n pi/2) above
    n = 340, a 0.1% difference there).  It matches R/S with the unbiased (ddof=1) standard deviation
    within 0.2% for n >= 10 (checked by simulation in the tests).
    """
    s = np.atleast_1d(np.asarray(scales, dtype=np.int64))
    out = np.empty(s.shape, dtype=float)
    for idx, n in np.ndenumerate(s):
        i = np.arange(1, n)
        back = np.sqrt((n - i) / i).sum()
        middle = math.exp(
            scipy.special.gammaln((n - 1) / 2) - scipy.special.gammaln(n / 2)
        ) / math.sqrt(math.pi)
        out[idx] = (n - 0.5) / n * middle * back
    return out if np.ndim(scales) else out[0]


def _rs_kernel(x: np.ndarray, scales: np.ndarray, ddof: int, overlap: bool = False) -> np.ndarray:
    """Mean R/S over windows, per series and scale: (batch, n) -> (batch, k).

    Windows start at 0 and every ``s`` (or ``s // 2`` with overlap); a tail that does not fill a
    window is dropped (as in nolds).  Windows whose range is 0 (constant windows) are left out of
    the mean; a scale with none left is NaN.

    The cumulative deviations come from one running sum S of the series per block:
    Z_j = S_{a+j} - S_a - j * mean_w, and R = max_j Z_j - min_j Z_j, in which S_a cancels.  The
    running sums and window moments are float64; the per-window range pass runs in the input's
    precision (float32 input: relative error < 1e-6 on R/S, tested; far below the spread).

    Blocks of series are laid out time-major, (n, rows), so that the range of every window is a
    reduction over a middle axis, vectorised over the series; series too long for a block of
    ``_RS_MIN_ROWS`` rows take the series-major path.
    """
    rows = min(256, max(1, _RS_BLOCK_ELEMENTS // x.shape[1]))
    time_major = rows >= _RS_MIN_ROWS
    return _map_blocks(
        functools.partial(
            _rs_block, scales=scales, ddof=ddof, overlap=overlap, time_major=time_major
        ),
        x,
        scales.size,
        rows,
    )


def _window_range(levels: np.ndarray, mean: np.ndarray, s: int, pos_axis: int) -> np.ndarray:
    """R of every window: max_j Z_j - min_j Z_j with Z_j = levels_j - (j + 1) * mean, j < s.

    ``levels`` holds the running sums inside each window along ``pos_axis`` (1 or 2 of a 3-D
    view); ``mean`` has the shape of ``levels`` without that axis.  Short windows take a running
    max/min position by position on cache-resident slices; long ones one reduction.
    """
    if s <= _RS_LOOP_MAX_SCALE:
        at = [slice(None)] * 3
        at[pos_axis] = 0
        hi = levels[tuple(at)] - mean
        lo = hi.copy()
        z = np.empty_like(hi)
        for j in range(1, s):
            at[pos_axis] = j
            np.multiply(mean, j + 1, out=z)
            np.subtract(levels[tuple(at)], z, out=z)
            np.maximum(hi, z, out=hi)
            np.minimum(lo, z, out=lo)
        return np.subtract(hi, lo, dtype=np.float64)
    positions = np.arange(1, s + 1, dtype=levels.dtype).reshape(
        [-1 if k == pos_axis else 1 for k in range(3)]
    )
    z = np.multiply(positions, np.expand_dims(mean, pos_axis))
    np.subtract(levels, z, out=z)
    range_ = z.max(axis=pos_axis).astype(np.float64)
    range_ -= z.min(axis=pos_axis)
    return range_


def _mean_rs(range_: np.ndarray, var: np.ndarray, window_axis: int) -> np.ndarray:
    """Mean of R/S over windows; windows with R == 0 (constant, where S == 0 too) are left out,
    as nolds does."""
    ratio = range_ / np.sqrt(np.maximum(var, 0.0))
    keep = range_ > 0
    if keep.all():
        return ratio.mean(axis=window_axis)
    return np.where(keep, ratio, 0.0).sum(axis=window_axis) / keep.sum(axis=window_axis)


def _running_sums(xb: np.ndarray):
    """Running sums of the centred series and of its squares, float64, (b, n + 1) each.

    Centring is free (R/S is invariant to a constant) and keeps the running sum small.  The input
    is never modified.  Both sums live in one buffer and the squares are summed in place: fresh
    scratch arrays cost as much as the sums themselves here (page faults).
    """
    b, n = xb.shape
    out = np.empty((2, b, n + 1))
    out[:, :, 0] = 0.0
    xc = out[1, :, 1:]
    np.subtract(xb, xb.mean(axis=1, keepdims=True, dtype=np.float64), out=xc)
    np.cumsum(xc, axis=1, out=out[0, :, 1:])
    np.square(xc, out=xc)
    np.cumsum(xc, axis=1, out=xc)
    return out[0], out[1]


def _window_moments(csum, csq, s: int, step: int, ddof: int):
    """Number of windows, and per-window mean and variance, (b, m) each."""
    n = csum.shape[1] - 1
    m = (n - s) // step + 1  # windows [a, a + s) with a = 0, step, 2 step, ...
    last = (m - 1) * step
    sums = csum[:, s : last + s + 1 : step] - csum[:, 0 : last + 1 : step]
    sumsq = csq[:, s : last + s + 1 : step] - csq[:, 0 : last + 1 : step]
    mean = sums / s
    return m, mean, (sumsq - sums * mean) / (s - ddof)


def _rs_block(xb: np.ndarray, *, scales: np.ndarray, ddof: int, overlap: bool, time_major: bool):
    """R/S of one block of series, per scale: (b, n) -> (b, k).

    Time-major (n, b) levels make every window reduction run over the series at once (fast when
    the block holds many series); series-major (b, n) levels suit a few long series.
    """
    work = xb.dtype
    b = xb.shape[0]
    csum, csq = _running_sums(xb)
    if time_major:
        levels_all = np.ascontiguousarray(csum[:, 1:].T, dtype=work)  # (n, b)
    else:
        levels_all = csum[:, 1:].astype(work)  # (b, n)
    out = np.empty((b, scales.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, s in enumerate(scales):
            s = int(s)
            step = max(1, s // 2) if overlap else s
            m, mean, var = _window_moments(csum, csq, s, step, ddof)
            if time_major:
                if overlap:
                    levels = np.lib.stride_tricks.sliding_window_view(levels_all, s, axis=0)[::step]
                    levels = levels.transpose(0, 2, 1)
                else:
                    levels = levels_all[: m * s].reshape(m, s, b)
                range_ = _window_range(levels, np.ascontiguousarray(mean.T, dtype=work), s, 1)
                out[:, i] = _mean_rs(range_, var.T, 0)
            else:
                if overlap:
                    levels = np.lib.stride_tricks.sliding_window_view(levels_all, s, axis=1)[
                        :, ::step
                    ]
                else:
                    levels = levels_all[:, : m * s].reshape(b, m, s)
                out[:, i] = _mean_rs(_window_range(levels, mean.astype(work), s, 2), var, 1)
    return out


def hurst_rs(
    x,
    *,
    scales: Sequence[int] | None = None,
    corrected: bool | None = None,
    ddof: int | None = None,
    overlap: bool = False,
    preset: Literal["tan2021"] | None = None,
    axis: int = -1,
) -> HurstEstimate:
    """Estimate the Hurst exponent by rescaled-range (R/S) analysis of increments.

    For each window size s the series is cut into floor(n/s) non-overlapping windows (starting at
    the first observation, the remainder dropped); in each window R is the range of the cumulative
    deviations from the window mean and S the window's standard deviation.  (R/S)_s is the mean of
    R/S over the windows, and H the least-squares slope of log (R/S)_s on log s.

    Parameters
    ----------
    x : array_like
        Increments (the noise series itself), any leading shape; float32 or float64.
    scales : sequence of int, optional
        Window sizes.  Default :func:`rs_scales`: 20 log-spaced sizes from 10 to n/4.
    corrected : bool, default True
        Fit ``log (R/S)_s - log E[R/S]_s`` and add 1/2 (Anis-Lloyd-Peters correction, see
        :func:`expected_rs`).  This removes the small-sample bias of R/S that makes white noise
        read H > 0.5.  ``False`` is textbook R/S.
    ddof : int, default 1
        Delta degrees of freedom of S (1: unbiased variance, as nolds).
    overlap : bool, default False
        Windows start every s//2 points instead of every s (more windows, ~2x the work; it barely
        changes the accuracy, which is limited by bias, not variance).
    preset : {"tan2021"}, optional
        The seed authors' protocol (Tan, Zhang & Liu, arXiv:2105.02062): nolds-style R/S,
        uncorrected, ddof=1, window sizes :data:`TAN2021_RS_SCALES` (50 ... 445), least-squares
        fit.  Use it to put your number next to their reported mean H = 0.46 (ResNet-20,
        CIFAR-10).  Beware: on *white noise* of length 3000 this preset reads H = 0.54 on average
        (small-sample bias of uncorrected R/S), so compare against :func:`shuffled_baseline`.
        Cannot be combined with ``scales``, ``corrected`` or ``ddof``.
    axis : int
        Time axis.

    Returns
    -------
    HurstEstimate
        ``fluctuation`` holds (R/S)_s; ``stderr`` is the OLS standard error of the slope, which
        ignores the correlation between scales and understates the sampling spread (use
        :func:`hurst_whittle` or :func:`shuffled_baseline` for honest uncertainty).

    Notes
    -----
    Accuracy (exact fGn, n = 2048, 200 replicates, ``benchmarks/accuracy.py``): the corrected
    default is unbiased at H = 0.5 but, like every R/S estimator, biased toward 1/2 away from it
    (+0.06 at H = 0.2, -0.14 at H = 0.95); pooled RMSE over H = 0.2 ... 0.95 is 0.077 (nolds
    0.087, hurst.compute_Hc 0.076), against 0.031 for :func:`hurst_dfa` and 0.014 for
    :func:`hurst_whittle`.  No window range we scanned brings corrected R/S below 0.070.  Use R/S
    to compare with the literature, not as the headline estimate.

    Reproducing nolds exactly: ``nolds.hurst_rs(x, nvals=s, fit="poly", corrected=False)`` equals
    ``hurst_rs(x, scales=s, corrected=False)`` to ~1e-10 (tested).  With ``corrected=True`` the two
    differ by < 1e-3 because nolds approximates E[R/S] above n = 340.
    ``hurst.compute_Hc(x, kind="change", simplified=False)`` equals
    ``hurst_rs(x, scales=<its windows>, corrected=False)`` to ~1e-15 (``benchmarks/accuracy.py``).

    Series that are constant or hold NaN/inf give NaN (one warning for the batch); a time axis
    shorter than the default scales need raises :class:`~sgn_memory.InsufficientDataError`.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> x = sgn.fgn(2048, 0.7, size=100, rng=0)
    >>> est = sgn.hurst_rs(x)
    >>> est.hurst.shape
    (100,)
    """
    if preset is not None:
        if preset != "tan2021":
            raise SgnMemoryError(f"preset must be 'tan2021' or None; got {preset!r}.")
        if scales is not None or corrected is not None or ddof is not None or overlap:
            raise SgnMemoryError(
                "preset='tan2021' fixes scales, corrected, ddof and overlap; do not pass them too."
            )
        scales, corrected, ddof = TAN2021_RS_SCALES, False, 1
    corrected = True if corrected is None else bool(corrected)
    ddof = 1 if ddof is None else int(ddof)
    if ddof not in (0, 1):
        raise SgnMemoryError(f"ddof must be 0 or 1; got {ddof}.")
    if scales is None:
        batch = as_batch(x, axis, min_length=1, estimator="hurst_rs")
        s = _default_scales(batch.n, rs_scales, "hurst_rs")
        scale_source = "rs_scales(n): 20 log-spaced sizes from 10 to n/4"
    else:
        batch = as_batch(x, axis, min_length=2, estimator="hurst_rs")
        s = _check_scales(scales, batch.n, 2, "hurst_rs")
        scale_source = "preset tan2021" if preset else "user"
    rs = _rs_kernel(batch.valid_rows(), s, ddof, bool(overlap))
    return _finish_loglog(
        batch,
        s,
        rs,
        correction=np.log(expected_rs(s)) if corrected else None,
        method="rs-corrected" if corrected else "rs",
        settings={
            "corrected": corrected,
            "ddof": ddof,
            "preset": preset,
            "scales": scale_source,
            "overlap": bool(overlap),
            "windows": "from the start, every s (s//2 with overlap), remainder dropped",
            "stderr": _OLS_STDERR,
        },
    )


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


# ============================================================================================
# DFA


@functools.lru_cache(maxsize=256)
def _gram_basis(s: int, order: int) -> np.ndarray:
    """Orthonormal polynomial basis (s, order+1) on the points 0..s-1 (Gram polynomials)."""
    t = (np.arange(s) - (s - 1) / 2.0) / s  # centred and scaled: well-conditioned Vandermonde
    vander = np.vander(t, order + 1, increasing=True)
    q, _ = np.linalg.qr(vander)
    q.setflags(write=False)
    return q


def _dfa_kernel(x: np.ndarray, scales: np.ndarray, order: int, overlap: bool, average: str):
    """Fluctuation function F(s), (batch, n) -> (batch, k).

    The profile Y = cumsum(x - mean) is cut into windows; in each, the residual sum of squares of
    the least-squares polynomial of the given order is |y|^2 - |P^T y|^2 with P an orthonormal
    polynomial basis of the window (one matrix product per scale, no per-window fits).  All in
    float64: the two terms are close when the window's level is large.
    """
    return _map_blocks(
        functools.partial(_dfa_block, scales=scales, order=order, overlap=overlap, average=average),
        x,
        scales.size,
        _BLOCK_ELEMENTS // (2 * x.shape[1]),
    )


def _dfa_block(xb: np.ndarray, *, scales, order, overlap, average) -> np.ndarray:
    xb = xb.astype(np.float64)
    xb -= xb.mean(axis=1, keepdims=True)
    profile = np.cumsum(xb, axis=1)
    b, n = profile.shape
    out = np.empty((b, scales.size))
    for i, s in enumerate(scales):
        s = int(s)
        basis = _gram_basis(s, order)
        if overlap:
            step = max(1, s // 2)
            windows = np.lib.stride_tricks.sliding_window_view(profile, s, axis=1)[:, ::step]
        else:
            m = n // s
            windows = profile[:, : m * s].reshape(b, m, s)
        coef = windows @ basis  # (b, m, order+1)
        sq = np.einsum("bms,bms->bm", windows, windows)
        rss = sq - np.einsum("bmk,bmk->bm", coef, coef)
        f2 = np.maximum(rss, 0.0) / s
        if average == "rms":
            out[:, i] = np.sqrt(f2.mean(axis=1))
        else:
            out[:, i] = np.sqrt(f2).mean(axis=1)
    return out


def hurst_dfa(
    x,
    *,
    order: int = 1,
    scales: Sequence[int] | None = None,
    overlap: bool = False,
    average: Literal["rms", "mean"] = "rms",
    axis: int = -1,
) -> HurstEstimate:
    """Estimate the Hurst exponent by detrended fluctuation analysis (DFA) of increments.

    The profile Y_t = sum_{i<=t} (x_i - mean x) is cut into windows of size s; in each window a
    polynomial of degree ``order`` is fitted by least squares and F_w^2(s) is the mean squared
    residual.  F(s) aggregates the windows and H is the least-squares slope of log F(s) on log s.
    For fGn-like increments the DFA exponent equals H.

    Parameters
    ----------
    x : array_like
        Increments (the noise series itself), any leading shape; float32 or float64.
    order : {1, 2, 3}
        Degree of the local detrending polynomial (DFA-1 removes linear trends in the profile,
        i.e. a constant shift of the noise's mean in each window).
    scales : sequence of int, optional
        Window sizes.  Default :func:`dfa_scales`: 20 log-spaced sizes from 4(order+1) to n/10.
    overlap : bool, default False
        Windows start every s//2 points instead of every s (more windows, ~2x the work).
    average : {"rms", "mean"}
        F(s) = sqrt(mean_w F_w^2) (``"rms"``, the standard definition of Peng et al. and
        Kantelhardt et al.) or mean_w F_w (``"mean"``, what nolds computes).
    axis : int
        Time axis.

    Returns
    -------
    HurstEstimate
        ``fluctuation`` holds F(s); ``stderr`` is the OLS standard error of the slope (it ignores
        the correlation between scales and understates the sampling spread).

    Notes
    -----
    Cost: one matrix product with an orthonormal (s, order+1) polynomial basis per scale, so
    O(n * order) per scale and series, in blocks of series that fit in cache.

    Accuracy (exact fGn, n = 2048, 200 replicates, ``benchmarks/accuracy.py``): pooled RMSE over
    H = 0.2 ... 0.95 is 0.031 for orders 1 and 2, bias at most +0.02 (at H = 0.2).

    Reproducing nolds exactly: ``nolds.dfa(x, nvals=s, overlap=False, order=1, fit_exp="poly")``
    equals ``hurst_dfa(x, scales=s, average="mean")`` to ~1e-10 (tested);
    ``fathon.DFA(fathonUtils.toAggregated(x)).computeFlucVec(s, polOrd=1, revSeg=False)`` followed
    by ``fitFlucVec()`` equals ``hurst_dfa(x, scales=s)`` to ~3e-12 (``benchmarks/accuracy.py``).
    nolds' own overlapping windows omit the last window; ours include every window that fits.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> est = sgn.hurst_dfa(sgn.fgn(4096, 0.3, size=(2, 50), rng=0), order=2)
    >>> est.hurst.shape
    (2, 50)
    """
    if order not in (1, 2, 3):
        raise SgnMemoryError(f"order must be 1, 2 or 3; got {order!r}.")
    if average not in ("rms", "mean"):
        raise SgnMemoryError(f"average must be 'rms' or 'mean'; got {average!r}.")
    if scales is None:
        batch = as_batch(x, axis, min_length=1, estimator="hurst_dfa")
        s = _default_scales(batch.n, functools.partial(dfa_scales, order=order), "hurst_dfa")
        scale_source = f"dfa_scales(n, order={order}): 20 log-spaced sizes from {s[0]} to n/10"
    else:
        batch = as_batch(x, axis, min_length=order + 2, estimator="hurst_dfa")
        s = _check_scales(scales, batch.n, order + 2, "hurst_dfa")
        scale_source = "user"
    fluct = _dfa_kernel(batch.valid_rows(), s, order, bool(overlap), average)
    return _finish_loglog(
        batch,
        s,
        fluct,
        correction=None,
        method=f"dfa-{order}",
        settings={
            "order": order,
            "overlap": bool(overlap),
            "average": average,
            "scales": scale_source,
            "stderr": _OLS_STDERR,
        },
    )


# ============================================================================================
# Whittle


_WHITTLE_GRID = np.arange(1, 1000) / 1000.0  # H grid of the likelihood table (step 0.001)
_WHITTLE_COARSE = 20  # coarse search uses every 20th grid point (step 0.02)


def _fgn_spectral_shape(hurst: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """fGn spectral density up to a factor depending on H only, shape (len(hurst), len(freqs)).

    f(lambda) = c(H) (1 - cos lambda) sum_{k in Z} |lambda + 2 pi k|^{-2H-1}, and the sum is
    (2 pi)^{-2H-1} [zeta(2H+1, lambda/2pi) + zeta(2H+1, 1 - lambda/2pi)] with the Hurwitz zeta
    function, exact (no truncated sum, no Paxson approximation).  c(H) and (2 pi)^{-2H-1} cancel in
    the profiled Whittle likelihood.
    """
    d = 2.0 * np.asarray(hurst, dtype=float)[:, None] + 1.0
    u = freqs[None, :] / (2.0 * np.pi)
    return (1.0 - np.cos(freqs))[None, :] * (
        scipy.special.zeta(d, u) + scipy.special.zeta(d, 1.0 - u)
    )


# Largest likelihood table (H grid x frequencies) that is cached per n: 999 x 8400 x 8 B ~ 67 MB,
# i.e. series up to ~16800 long.  Longer series evaluate the spectrum on the fly, in frequency
# chunks, only at the H values the search visits.
_WHITTLE_TABLE_ELEMENTS = 1 << 23
_WHITTLE_FREQ_CHUNK = 8192


def _fourier_frequencies(n: int) -> np.ndarray:
    return 2.0 * np.pi * np.arange(1, (n - 1) // 2 + 1) / n


@functools.lru_cache(maxsize=4)
def _whittle_table(n: int):
    """1/g on the whole H grid (G, m) and mean log g (G,), for series short enough to cache."""
    g = _fgn_spectral_shape(_WHITTLE_GRID, _fourier_frequencies(n))
    inv_g = 1.0 / g
    mean_log_g = np.log(g).mean(axis=1)
    inv_g.setflags(write=False)
    mean_log_g.setflags(write=False)
    return inv_g, mean_log_g


def _whittle_objective(per: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Profiled Whittle objective (up to a constant) at grid points ``idx``: (rows, len(idx)).

    Q(H) = log(sum_j I_j / g_j(H)) + mean_j log g_j(H).
    """
    m = per.shape[1]
    if _WHITTLE_GRID.size * m <= _WHITTLE_TABLE_ELEMENTS:
        inv_g, mean_log_g = _whittle_table(n)
        return np.log(per @ inv_g[idx].T) + mean_log_g[idx]
    freqs = _fourier_frequencies(n)
    total = np.zeros((per.shape[0], idx.size))
    log_total = np.zeros(idx.size)
    for start in range(0, m, _WHITTLE_FREQ_CHUNK):
        stop = min(start + _WHITTLE_FREQ_CHUNK, m)
        g = _fgn_spectral_shape(_WHITTLE_GRID[idx], freqs[start:stop])
        total += per[:, start:stop] @ (1.0 / g).T
        log_total += np.log(g).sum(axis=1)
    return np.log(total) + log_total / m


def _whittle_information(hurst: np.ndarray, n: int) -> np.ndarray:
    """Profiled Fisher information sum_j (d_j - mean d)^2, d_j = d/dH log g_j, at each ``hurst``.

    It depends on H and n only: computed by central differences (step 1e-5, error ~1e-10) at
    nodes spanning the estimates (every 0.01) and interpolated linearly (relative error < 0.3%,
    i.e. < 0.15% on the standard error; tested).
    """
    finite = hurst[np.isfinite(hurst)]
    if finite.size == 0:
        return np.full(hurst.shape, np.nan)
    lo, hi = np.floor(finite.min() * 100) / 100, np.ceil(finite.max() * 100) / 100
    nodes = np.clip(np.arange(lo, hi + 0.005, 0.01), 0.0005, 0.9995)
    freqs = _fourier_frequencies(n)
    eps = 1e-5
    s1 = np.zeros(nodes.size)
    s2 = np.zeros(nodes.size)
    for start in range(0, freqs.size, _WHITTLE_FREQ_CHUNK):
        f = freqs[start : start + _WHITTLE_FREQ_CHUNK]
        d = (
            np.log(_fgn_spectral_shape(nodes + eps, f))
            - np.log(_fgn_spectral_shape(nodes - eps, f))
        ) / (2 * eps)
        s1 += d.sum(axis=1)
        s2 += (d * d).sum(axis=1)
    info = s2 - s1**2 / freqs.size
    return np.interp(hurst, nodes, info) if nodes.size > 1 else np.full(hurst.shape, info[0])


def _whittle_kernel(x: np.ndarray):
    """Profiled Whittle estimate of H for fGn: (batch, n) -> (hurst, stderr, at_boundary).

    Minimises Q(H) = log(mean_j I_j / g_j(H)) + mean_j log g_j(H) over the Fourier frequencies
    lambda_j = 2 pi j / n, j = 1..floor((n-1)/2).  The objective for all series at once is a matrix
    product of the periodograms with 1/g: first on a coarse H grid (step 0.02), then on the fine
    grid (step 0.001) around each coarse minimum, then a parabola through the three best fine
    points.
    """
    batch, n = x.shape
    m = (n - 1) // 2
    grid = _WHITTLE_GRID
    G = grid.size
    coarse_idx = np.arange(_WHITTLE_COARSE // 2 - 1, G, _WHITTLE_COARSE)
    half = _WHITTLE_COARSE
    hurst = np.empty(batch)
    rows_per_block = max(1, (1 << 23) // n)
    for start in range(0, batch, rows_per_block):
        stop = min(start + rows_per_block, batch)
        spec = scipy.fft.rfft(x[start:stop], axis=1, workers=-1)[:, 1 : m + 1]
        per = np.square(spec.real, dtype=np.float64)
        per += np.square(spec.imag, dtype=np.float64)
        del spec
        best = coarse_idx[np.argmin(_whittle_objective(per, coarse_idx, n), axis=1)]
        for centre in np.unique(best):
            rows = np.flatnonzero(best == centre)
            fine_idx = np.arange(max(0, centre - half), min(G, centre + half + 1))
            fobj = _whittle_objective(per[rows], fine_idx, n)
            # parabola through (k-1, k, k+1), with the best point k moved inside the fine window
            k = np.clip(np.argmin(fobj, axis=1), 1, fine_idx.size - 2)
            r = np.arange(rows.size)
            y0, y1, y2 = fobj[r, k - 1], fobj[r, k], fobj[r, k + 1]
            denom = y0 - 2 * y1 + y2
            with np.errstate(invalid="ignore", divide="ignore"):
                shift = np.where(denom > 0, 0.5 * (y0 - y2) / denom, 0.0)
            hurst[start + rows] = grid[fine_idx[k]] + np.clip(shift, -1.0, 1.0) * (
                grid[1] - grid[0]
            )
    hurst = np.clip(hurst, grid[0], grid[-1])
    at_boundary = (hurst <= grid[1]) | (hurst >= grid[-2])
    stderr = 1.0 / np.sqrt(_whittle_information(hurst, n))
    return hurst, stderr, at_boundary


def hurst_whittle(x, *, axis: int = -1) -> HurstEstimate:
    """Estimate the Hurst exponent by Whittle maximum likelihood for fractional Gaussian noise.

    Fits the exact fGn spectral density to the periodogram at the Fourier frequencies
    lambda_j = 2 pi j / n, j = 1..floor((n-1)/2), with the scale profiled out (Fox & Taqqu 1986,
    Beran 1994).  Frequency 0 is excluded, so the estimate ignores the series' mean.

    Parameters
    ----------
    x : array_like
        Increments, any leading shape; float32 or float64.  At least 32 observations.
    axis : int
        Time axis.

    Returns
    -------
    HurstEstimate
        ``stderr`` = 1 / sqrt(sum_j (d_j - mean d)^2), d_j = d/dH log f(lambda_j; H) at the
        estimate: the inverse profiled Fisher information of the Whittle likelihood, i.e. the
        Cramer-Rao standard deviation for fGn (about 0.013 at n = 2048, H = 0.5).  ``scales`` and
        ``fluctuation`` are empty; ``fit_range`` is the frequency band used.

    Notes
    -----
    The search covers H in [0.001, 0.999] with a resolution far below the standard error (coarse
    grid, fine grid of step 0.001, parabolic refinement).  A series whose likelihood is maximal at
    an end of that interval gets the end value and a warning: this happens now and then when the
    true H is within a few standard errors of 0 or 1, and always for non-fGn input such as a
    random walk passed instead of its increments.

    Cost: the spectral density is exact (Hurwitz zeta), tabulated once per series length n up to
    ~16800 and cached (the first call for a new n takes about a second); longer series evaluate it
    on the fly at the H values the search visits (about 20 s for one series of 2^20).

    The estimate is efficient when the series *is* fGn; short-range dependence on top of long
    memory biases it (the fGn spectrum has one parameter).  Compare with :func:`hurst_dfa`.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> est = sgn.hurst_whittle(sgn.fgn(2048, 0.8, size=10, rng=0))
    >>> bool(abs(est.hurst.mean() - 0.8) < 0.03)
    True
    """
    batch = as_batch(x, axis, min_length=32, estimator="hurst_whittle")
    hurst, stderr, at_boundary = _whittle_kernel(batch.valid_rows())
    if at_boundary.any():
        warnings.warn(
            f"hurst_whittle: {int(at_boundary.sum())} series have their likelihood maximum at "
            "the end of the search interval [0.001, 0.999] and get that end value; expected now "
            "and then for true H near 0 or 1, otherwise a sign of input that is not fGn-like "
            "(e.g. a random walk instead of its increments).",
            DegenerateSeriesWarning,
            stacklevel=2,
        )
    m = (batch.n - 1) // 2
    nan_tail = np.full((*batch.lead_shape, 0), np.nan)
    return HurstEstimate(
        hurst=batch.unbatch(batch.scatter(hurst)),
        stderr=batch.unbatch(batch.scatter(stderr)),
        method="whittle-fgn",
        scales=np.empty(0, dtype=np.int64),
        fluctuation=nan_tail,
        fit_range=(2 * np.pi / batch.n, 2 * np.pi * m / batch.n),
        intercept=batch.unbatch(np.full(batch.data.shape[0], np.nan)),
        n_obs=batch.n,
        settings=MappingProxyType(
            {
                "model": "fgn",
                "frequencies": "2 pi j / n, j = 1..floor((n-1)/2)",
                "search": "H in [0.001, 0.999]: grid 0.02, then 0.001, then parabolic",
                "stderr": "inverse profiled Fisher information of the Whittle likelihood",
            }
        ),
    )


# ============================================================================================
# Lo's modified R/S test


def _bridge_range_cdf(v: np.ndarray) -> np.ndarray:
    """CDF of the range of a Brownian bridge (the Kuiper limit law), Lo (1991) eq. (3.9).

    F(v) = 1 + 2 sum_{k>=1} (1 - 4k^2 v^2) exp(-2k^2 v^2), converging fast for v >= 1; for v < 1 the
    Poisson-summation form F(v) = sqrt(2 pi) pi^2 / v^3 sum_{k>=1} k^2 exp(-pi^2 k^2 / (2 v^2)),
    which has no cancellation.
    """
    v = np.asarray(v, dtype=float)
    k = np.arange(1, 41, dtype=float)
    out = np.full(v.shape, np.nan)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        small = (v > 0) & (v < 1)
        vs = v[small][..., None]
        out[small] = (
            math.sqrt(2 * math.pi)
            * math.pi**2
            / vs[..., 0] ** 3
            * (k**2 * np.exp(-(math.pi**2) * k**2 / (2 * vs**2))).sum(axis=-1)
        )
        large = v >= 1
        vl = v[large][..., None]
        out[large] = 1.0 + 2.0 * ((1 - 4 * k**2 * vl**2) * np.exp(-2 * k**2 * vl**2)).sum(axis=-1)
    out[v <= 0] = 0.0
    return np.clip(out, 0.0, 1.0)


def _bridge_range_sf(v: np.ndarray) -> np.ndarray:
    """1 - F(v) without cancellation for large v."""
    v = np.asarray(v, dtype=float)
    k = np.arange(1, 41, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        vv = v[..., None]
        sf = 2.0 * ((4 * k**2 * vv**2 - 1) * np.exp(-2 * k**2 * vv**2)).sum(axis=-1)
    return np.where(v >= 1, np.clip(sf, 0.0, 1.0), 1.0 - _bridge_range_cdf(v))


def _autocovariances(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Biased (1/n) sample autocovariances, lags 0..max_lag, of mean-removed rows: (rows, L+1).

    Direct products for few lags (O(n) per lag), FFT beyond (O(n log n) for all lags).
    """
    rows, n = x.shape
    if max_lag <= 32:
        out = np.empty((rows, max_lag + 1))
        for k in range(max_lag + 1):
            out[:, k] = np.einsum("ij,ij->i", x[:, : n - k], x[:, k:])
        return out / n
    nfft = scipy.fft.next_fast_len(2 * n, real=True)
    spec = scipy.fft.rfft(x, nfft, axis=1, workers=-1)
    acov = scipy.fft.irfft(spec.real**2 + spec.imag**2, nfft, axis=1, workers=-1)
    return acov[:, : max_lag + 1] / n


def _lo_block(xb: np.ndarray, *, bandwidth) -> np.ndarray:
    """Lo's V statistic and the bandwidth per series: (rows, n) -> (rows, 2)."""
    n = xb.shape[1]
    xb = xb.astype(np.float64)
    xb -= xb.mean(axis=1, keepdims=True)
    partial = np.cumsum(xb, axis=1)
    # the partial sums run from S_1 to S_n = 0, so the range includes 0
    range_ = partial.max(axis=1) - partial.min(axis=1)
    del partial
    if bandwidth == "andrews":
        acov1 = _autocovariances(xb, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.clip(acov1[:, 1] / acov1[:, 0], -0.99, 0.99)
        rate = (1.5 * n) ** (1 / 3) * (2 * np.abs(rho) / (1 - rho**2)) ** (2 / 3)
        q = np.minimum(np.floor(rate), n - 1).astype(np.int64)
    else:
        q = np.full(xb.shape[0], bandwidth, dtype=np.int64)
    qmax = int(q.max()) if q.size else 0
    acov = _autocovariances(xb, qmax)
    lag = np.arange(1, qmax + 1)
    weights = np.clip(1.0 - lag[None, :] / (q[:, None] + 1.0), 0.0, None)  # Bartlett
    lrv = acov[:, 0] + 2.0 * (weights * acov[:, 1:]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = range_ / np.sqrt(np.where(lrv > 0, lrv, np.nan) * n)
    return np.stack([stat, q.astype(float)], axis=1)


def long_memory_test(
    x,
    *,
    method: Literal["lo"] = "lo",
    bandwidth: int | Literal["andrews"] = "andrews",
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
    axis: int = -1,
) -> TestResult:
    """Test the null hypothesis that a series has no long memory (Lo's modified R/S test).

    Lo's statistic is V = R / (sigma_q sqrt(n)), where R is the range of the partial sums of
    deviations from the mean over the whole series and sigma_q^2 = gamma_0 + 2 sum_{j=1}^q
    (1 - j/(q+1)) gamma_j is the Newey-West (Bartlett) long-run variance.  The long-run variance
    absorbs short-range dependence, so an AR(1) series does not read as long memory (as classical
    R/S, q = 0, does).  Under the null (short memory, strong mixing) V converges to the range of a
    Brownian bridge; the p-value comes from that law (Kuiper's distribution).

    Parameters
    ----------
    x : array_like
        Increments, any leading shape.  At least 20 observations.
    method : {"lo"}
        Lo (1991) modified R/S.
    bandwidth : int or "andrews"
        Number of autocovariance lags q.  ``"andrews"`` (default) chooses it per series by Andrews'
        (1991) AR(1) plug-in rule for the Bartlett kernel, as Lo (1991) does:
        q = floor((3n/2)^{1/3} (2|rho|/(1-rho^2))^{2/3}), rho the lag-1 autocorrelation; the
        chosen q per series is in ``settings["bandwidth"]``.  ``0`` gives classical R/S.
    alternative : {"two-sided", "greater", "less"}
        ``"greater"``: long memory (persistence, large V); ``"less"``: anti-persistence (small V).
        Lo's 5% two-sided acceptance region is [0.809, 1.862].
    axis : int
        Time axis.

    Returns
    -------
    TestResult
        Statistic V and p-value per series.

    Notes
    -----
    The test has power against long memory only through low frequencies: with a large q it loses
    power (the long-run variance absorbs part of the long memory), a known property (Teverovsky,
    Taqqu & Willinger 1999).  Read a non-rejection together with the H estimates.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> res = sgn.long_memory_test(sgn.fgn(2000, 0.5, size=200, rng=0))
    >>> 0.0 <= float((res.pvalue < 0.05).mean()) <= 0.1
    True
    """
    if method != "lo":
        raise SgnMemoryError(f"method must be 'lo'; got {method!r}.")
    if alternative not in ("two-sided", "greater", "less"):
        raise SgnMemoryError(
            f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}."
        )
    batch = as_batch(x, axis, min_length=20, estimator="long_memory_test")
    n = batch.n
    if bandwidth != "andrews" and (
        isinstance(bandwidth, bool)
        or not isinstance(bandwidth, int | np.integer)
        or not 0 <= bandwidth < n
    ):
        raise SgnMemoryError(
            f"bandwidth must be 'andrews' or an integer in [0, {n - 1}]; got {bandwidth!r}."
        )
    stat_q = _map_blocks(
        functools.partial(_lo_block, bandwidth=bandwidth),
        batch.valid_rows(),
        2,
        _BLOCK_ELEMENTS // (4 * n),
    )
    stat, q = stat_q[:, 0], stat_q[:, 1]
    cdf = _bridge_range_cdf(stat)
    sf = _bridge_range_sf(stat)
    if alternative == "greater":
        pvalue = sf
    elif alternative == "less":
        pvalue = cdf
    else:
        pvalue = np.minimum(1.0, 2.0 * np.minimum(cdf, sf))
    pvalue = np.where(np.isfinite(stat), pvalue, np.nan)
    return TestResult(
        statistic=batch.unbatch(batch.scatter(stat)),
        pvalue=batch.unbatch(batch.scatter(pvalue)),
        null_hypothesis="no long memory: short-range dependent (strong mixing), finite variance",
        alternative={
            "two-sided": "long memory or anti-persistence (H != 1/2)",
            "greater": "long memory (H > 1/2)",
            "less": "anti-persistence (H < 1/2)",
        }[alternative],
        method="lo-modified-rs",
        reference="range of a Brownian bridge (Kuiper's law), Lo (1991)",
        settings=MappingProxyType(
            {
                "bandwidth": batch.unbatch(batch.scatter(q)),
                "bandwidth_rule": "andrews-ar1-bartlett" if bandwidth == "andrews" else "fixed",
                "alternative": alternative,
            }
        ),
    )


# ============================================================================================
# no-memory baseline


def shuffled_baseline(
    x,
    estimator: Callable[..., HurstEstimate] = hurst_rs,
    *,
    n_surrogates: int = 20,
    rng=None,
    axis: int = -1,
    **options,
) -> SurrogateBaseline:
    """Run a Hurst estimator on the series and on time-shuffled copies of each series.

    Shuffling each series independently keeps its marginal distribution (heavy tails included) and
    destroys all temporal dependence, so the surrogate estimates are the number the estimator
    reads on *this* data when there is no memory at all.  Report H next to this baseline: the
    difference, not H - 0.5, is the evidence of memory.

    Parameters
    ----------
    x : array_like
        Increments, any leading shape.
    estimator : callable
        :func:`hurst_rs`, :func:`hurst_dfa` or :func:`hurst_whittle` (or any function with their
        signature returning a :class:`HurstEstimate`).
    n_surrogates : int
        Shuffled copies per series (the permutation p-value cannot go below 1/(n_surrogates+1)).
    rng : None, int or numpy.random.Generator
        Randomness of the shuffles.
    axis : int
        Time axis.
    **options
        Passed to the estimator (e.g. ``scales=``, ``preset="tan2021"``).

    Returns
    -------
    SurrogateBaseline

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> out = sgn.shuffled_baseline(sgn.fgn(3000, 0.5, size=20, rng=0), preset="tan2021", rng=1)
    >>> bool(abs(out.baseline.mean() - 0.54) < 0.03)
    True
    """
    if not isinstance(n_surrogates, int) or n_surrogates < 1:
        raise SgnMemoryError(f"n_surrogates must be a positive integer; got {n_surrogates!r}.")
    rng = np.random.default_rng(rng)
    x = np.moveaxis(np.asarray(x), axis, -1)
    estimate = estimator(x, axis=-1, **options)
    surrogates = np.empty((*estimate.hurst.shape, n_surrogates))
    with warnings.catch_warnings():
        # the original call already warned about degenerate series
        warnings.simplefilter("ignore", DegenerateSeriesWarning)
        for i in range(n_surrogates):
            surrogates[..., i] = estimator(rng.permuted(x, axis=-1), axis=-1, **options).hurst
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        baseline = surrogates.mean(axis=-1)
        baseline_std = (
            surrogates.std(axis=-1, ddof=1) if n_surrogates > 1 else np.full_like(baseline, np.nan)
        )
    pvalue = (1.0 + (surrogates >= estimate.hurst[..., None]).sum(axis=-1)) / (n_surrogates + 1.0)
    pvalue = np.where(np.isfinite(estimate.hurst), pvalue, np.nan)
    return SurrogateBaseline(
        estimate=estimate,
        surrogates=surrogates,
        baseline=baseline,
        baseline_std=baseline_std,
        excess=estimate.hurst - baseline,
        pvalue=pvalue,
        n_surrogates=n_surrogates,
    )
