"""Lo's modified R/S test of no long memory, and shuffled surrogates."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from types import MappingProxyType
from typing import Literal

import numpy as np
import scipy.fft
import scipy.special

from .._batch import as_batch
from ..errors import DegenerateSeriesWarning, SgnMemoryError
from ._common import _BLOCK_ELEMENTS, HurstEstimate, SurrogateBaseline, TestResult, _map_blocks
from ._rs import hurst_rs


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
