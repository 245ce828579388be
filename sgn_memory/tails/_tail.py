"""Tail-index estimators: Mohammadi et al.'s block-sum estimator and Hill's, vectorised."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import scipy.special

from .._batch import array_summary, as_batch
from ..errors import SgnMemoryError

TAIL_METHODS = ("mohammadi", "hill")


@dataclass(frozen=True, repr=False)
class TailIndex:
    """Tail-index estimates, one per series.

    Attributes
    ----------
    alpha : numpy.ndarray
        Estimated tail index (the stable alpha for ``"mohammadi"``; the Pareto exponent of |x|
        for ``"hill"``).  ``inf`` where the estimate of 1/alpha is <= 0.
    inv_alpha : numpy.ndarray
        The estimate of 1/alpha the method actually forms (average this one, not alpha).
    stderr : numpy.ndarray
        Asymptotic standard error of alpha (Hill: alpha / sqrt(k)); NaN for Mohammadi.
    method : str
    n_obs : int
    settings : Mapping
        Block size (Mohammadi) or k (Hill), and centring.
    """

    alpha: np.ndarray
    inv_alpha: np.ndarray
    stderr: np.ndarray
    method: str
    n_obs: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"TailIndex(method={self.method!r}, n_obs={self.n_obs}, "
            f"alpha[{array_summary(self.alpha)}], settings={dict(self.settings)})"
        )


def mohammadi_block(n: int) -> int:
    """Default block size K1 = floor(sqrt(n)) of the Mohammadi estimator."""
    return max(2, math.isqrt(n))


def hill_k(n: int) -> int:
    """Default number of order statistics k = floor(sqrt(n)) of the Hill estimator."""
    return max(2, math.isqrt(n))


def tail_index(
    x,
    *,
    method: Literal["mohammadi", "hill"] = "mohammadi",
    block: int | None = None,
    k: int | None = None,
    center: bool = False,
    axis: int = -1,
) -> TailIndex:
    """Estimate the tail index alpha of each series.

    Parameters
    ----------
    x : array_like
        Samples along ``axis``, any leading shape.
    method : {"mohammadi", "hill"}
        - ``"mohammadi"`` (default): the block-sum estimator of Mohammadi, Mohammadpour &
          Ogata (2015) used by Simsekli, Sagun & Gurbuzbalaban (2019) for gradient noise.
          With K = K1 K2 samples and Y_i the sums of K2 consecutive blocks of K1,
          1/alpha = (mean log|Y_i| - mean log|X_j|) / log K1.  Exact in expectation for
          symmetric stable laws centred at 0; for a finite-variance law it tends to 2 but can
          exceed 2 in a finite sample (and 1/alpha can even be <= 0; alpha is then ``inf``).
        - ``"hill"``: Hill (1975) on |x|: 1/alpha = mean_{i<=k} log(|x|_(i) / |x|_(k+1)) over the
          k largest absolute values; asymptotic standard error alpha / sqrt(k).
    block : int, optional
        K1 for ``"mohammadi"``; default :func:`mohammadi_block`, floor(sqrt(n)), which balances
        the number of blocks against the block length (Simsekli et al. take the largest divisor
        of n below sqrt(n), which is 1 for prime n; we drop the last n - K1 K2 samples instead).
    k : int, optional
        Order statistics for ``"hill"``; default :func:`hill_k`, floor(sqrt(n)).  For stable
        laws the second-order tail term decays like x^-alpha, so larger k biases Hill upward
        near alpha = 2; sqrt(n) keeps that bias small at the cost of variance.
    center : bool, default False
        Subtract each series' median first.  Gradient noise u = g - grad L has mean zero by
        construction, so the default leaves it alone; raw gradients need centring.
    axis : int

    Returns
    -------
    TailIndex

    References
    ----------
    1. Mohammadi, M., Mohammadpour, A. & Ogata, H. (2015). On estimating the tail index and the
       spectral measure of multivariate alpha-stable distributions. Metrika 78, 549-561.
    2. Simsekli, U., Sagun, L. & Gurbuzbalaban, M. (2019). A tail-index analysis of stochastic
       gradient noise in deep neural networks. ICML.
    3. Hill, B. M. (1975). A simple general approach to inference about the tail of a
       distribution. Annals of Statistics 3, 1163-1174.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> from sgn_memory.tails import stable_rvs
    >>> est = sgn.tail_index(stable_rvs(1.5, size=(200, 4000), rng=0))
    >>> bool(abs(est.alpha.mean() - 1.5) < 0.1)
    True
    """
    if method not in TAIL_METHODS:
        raise SgnMemoryError(f"method must be one of {TAIL_METHODS}; got {method!r}.")
    batch = as_batch(x, axis, min_length=8, estimator="tail_index")
    n = batch.n
    data = batch.valid_rows().astype(np.float64)
    if center:
        data = data - np.median(data, axis=1, keepdims=True)
    tiny = np.finfo(np.float64).tiny
    if method == "mohammadi":
        k1 = mohammadi_block(n) if block is None else int(block)
        if not 2 <= k1 <= n // 2:
            raise SgnMemoryError(f"block must be between 2 and n/2 = {n // 2}; got {k1}.")
        k2 = n // k1
        used = data[:, : k1 * k2]
        sums = used.reshape(used.shape[0], k2, k1).sum(axis=2)
        inv = (
            np.log(np.abs(sums) + tiny).mean(axis=1) - np.log(np.abs(used) + tiny).mean(axis=1)
        ) / math.log(k1)
        stderr = np.full(inv.shape, np.nan)
        settings = {"block": k1, "blocks": k2, "center": bool(center)}
    else:
        kk = hill_k(n) if k is None else int(k)
        if not 2 <= kk < n:
            raise SgnMemoryError(f"k must be between 2 and n - 1 = {n - 1}; got {kk}.")
        top = -np.partition(-np.abs(data), kk, axis=1)[:, : kk + 1]
        top = -np.sort(-top, axis=1)
        logs = np.log(top + tiny)
        inv = logs[:, :kk].mean(axis=1) - logs[:, kk]
        with np.errstate(divide="ignore"):
            stderr = np.where(inv > 0, 1 / inv, np.inf) / math.sqrt(kk)
        settings = {"k": kk, "center": bool(center)}
    with np.errstate(divide="ignore"):
        alpha = np.where(inv > 0, 1 / inv, np.inf)
    full = batch.scatter(np.stack([alpha, inv, stderr], axis=1))
    return TailIndex(
        alpha=batch.unbatch(full[:, 0]),
        inv_alpha=batch.unbatch(full[:, 1]),
        stderr=batch.unbatch(full[:, 2]),
        method=method,
        n_obs=n,
        settings=MappingProxyType(settings),
    )


# ============================================================================================
# diagnostics a report can draw


@dataclass(frozen=True, repr=False)
class TailDiagnostics:
    """Data for a log-log survival plot and a Gaussian QQ plot of one series.

    Attributes
    ----------
    threshold, survival : numpy.ndarray
        Empirical P(|x - loc| > u) at the sorted |x - loc| (thinned to at most ``points``,
        log-spaced in rank so the tail keeps its detail).
    stable_survival, gaussian_survival : numpy.ndarray
        The same probability under the fitted stable law (scipy's ``levy_stable``) and under
        the normal law with the sample mean and standard deviation.
    qq_theoretical, qq_sample : numpy.ndarray
        Normal quantiles at plotting positions (i - 1/2)/n against the standardised sorted
        sample (thinned likewise).
    fit : StableFit
    """

    threshold: np.ndarray
    survival: np.ndarray
    stable_survival: np.ndarray
    gaussian_survival: np.ndarray
    qq_theoretical: np.ndarray
    qq_sample: np.ndarray
    fit: Any

    def __repr__(self) -> str:
        return f"TailDiagnostics({self.threshold.size} survival points, fit={self.fit!r})"


def _thin_ranks(n: int, points: int) -> np.ndarray:
    ranks = np.unique(np.round(np.geomspace(1, n, points)).astype(np.intp)) - 1
    return ranks


def tail_diagnostics(x, *, points: int = 200) -> TailDiagnostics:
    """Survival and QQ data of one series, with its fitted stable and Gaussian laws.

    Evaluates the fitted stable law with scipy (a few hundred points; fine for the handful of
    series a report draws, not for 10^4).
    """
    from scipy import stats

    from ._stable import fit_stable, s0_to_s1_loc

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise SgnMemoryError(f"tail_diagnostics takes one series (1-D); got shape {x.shape}.")
    fit = fit_stable(x)
    n = x.size
    loc = float(fit.loc)
    dev = np.sort(np.abs(x - loc))[::-1]  # descending
    ranks = _thin_ranks(n, points)
    threshold = dev[ranks]
    survival = (ranks + 1) / n
    a, b, g = float(fit.alpha), float(fit.beta), float(fit.scale)
    loc1 = float(s0_to_s1_loc(a, b, g, loc))
    if stats.levy_stable.parameterization == "S1":
        law = stats.levy_stable(a, b, loc=loc1, scale=g)
    else:
        law = stats.levy_stable(a, b, loc=loc, scale=g)
    stable_surv = law.sf(loc + threshold) + law.cdf(loc - threshold)
    if a < 2:
        # far in the tail scipy's numerical integration underflows; use the exact asymptote
        # P(|X - loc| > u) ~ 2 C_a g^a u^-a, C_a = Gamma(a) sin(pi a / 2) / pi (both tails)
        asymptote = 2 * math.gamma(a) * math.sin(math.pi * a / 2) / math.pi * (g / threshold) ** a
        far = threshold > 50 * g
        stable_surv = np.where(far | (stable_surv <= 0), asymptote, stable_surv)
    mean, sd = x.mean(), x.std(ddof=1)
    gauss = scipy.special.ndtr(-(loc + threshold - mean) / sd) + scipy.special.ndtr(
        (loc - threshold - mean) / sd
    )
    z = np.sort((x - mean) / sd)
    qranks = _thin_ranks(n, points)
    qq_pos = np.unique(np.concatenate([qranks, n - 1 - qranks]))
    theoretical = scipy.special.ndtri((qq_pos + 0.5) / n)
    return TailDiagnostics(
        threshold=threshold,
        survival=survival,
        stable_survival=stable_surv,
        gaussian_survival=gauss,
        qq_theoretical=theoretical,
        qq_sample=z[qq_pos],
        fit=fit,
    )
