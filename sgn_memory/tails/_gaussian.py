"""Is the noise Gaussian?  A vectorised battery of normality tests and a projection test.

Every test is written once for a ``(batch, n)`` float64 block; :func:`gaussianity` sorts and
standardises each block once and shares the work between the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import scipy.special

from .._batch import array_summary, as_batch, map_blocks
from ..errors import SgnMemoryError

GAUSSIANITY_TESTS = ("shapiro", "dagostino", "anderson", "jarque_bera", "lilliefors")
SHAPIRO_MAX_N = 5000  # Royston's (1995) approximation of W's null law is fitted up to n = 5000
_MIN_N = 8  # D'Agostino's skewness test needs n >= 8; the others need less
_BLOCK_ELEMENTS = 1 << 19
_THREADS = 2

_NULL = "each series is i.i.d. from a normal law with unknown mean and variance"


# ============================================================================================
# results


@dataclass(frozen=True, repr=False)
class GaussianityResult:
    """Per-series statistics and p-values of a battery of normality tests.

    Attributes
    ----------
    tests : tuple of str
        Test names, in the order run.
    statistic, pvalue : Mapping[str, numpy.ndarray]
        Per test, one value per series (shape = input shape without the time axis); NaN for
        constant or non-finite series.
    level : float
        Significance level of the rejection fractions.
    rejected_fraction, rejected_fraction_bh : Mapping[str, float]
        Per test, the fraction of (finite) series with p-value <= ``level``, raw and after the
        Benjamini-Hochberg step-up procedure at false-discovery rate ``level`` over all series.
    n_obs : int
        Series length (before any subsampling for Shapiro-Wilk).
    n_series : int
        Number of series with finite p-values (the denominator of the fractions).
    null_hypothesis : str
    settings : Mapping
        Data-driven choices: the Shapiro-Wilk subsample, how p-values were obtained.
    """

    tests: tuple[str, ...]
    statistic: Mapping[str, np.ndarray]
    pvalue: Mapping[str, np.ndarray]
    level: float
    rejected_fraction: Mapping[str, float]
    rejected_fraction_bh: Mapping[str, float]
    n_obs: int
    n_series: int
    null_hypothesis: str = _NULL
    settings: Mapping[str, Any] = field(default_factory=dict)

    def rejected(self, test: str, *, bh: bool = False) -> np.ndarray:
        """Boolean array: series whose ``test`` rejects at ``level`` (raw or after BH)."""
        p = self.pvalue[test]
        return benjamini_hochberg(p, self.level) if bh else np.asarray(p <= self.level)

    def summary(self) -> list[dict[str, Any]]:
        """One row per test: name, median statistic, fractions rejected raw and after BH."""
        return [
            {
                "test": t,
                "median_statistic": float(np.nanmedian(self.statistic[t]))
                if np.isfinite(self.statistic[t]).any()
                else float("nan"),
                "rejected_fraction": self.rejected_fraction[t],
                "rejected_fraction_bh": self.rejected_fraction_bh[t],
                "level": self.level,
            }
            for t in self.tests
        ]

    def __repr__(self) -> str:
        lines = [
            f"GaussianityResult(n_obs={self.n_obs}, n_series={self.n_series}, level={self.level})"
        ]
        for t in self.tests:
            lines.append(
                f"  {t:<12} rejected {self.rejected_fraction[t]:.3f} raw, "
                f"{self.rejected_fraction_bh[t]:.3f} BH; pvalue[{array_summary(self.pvalue[t])}]"
            )
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class ProjectionGaussianity:
    """Normality of noise *vectors*, tested on random one-dimensional projections.

    Attributes
    ----------
    projections : GaussianityResult
        The battery on each projected series; shape ``lead + (n_projections,)``.
    directions : numpy.ndarray
        Unit vectors used, ``(n_projections, k)`` (in the standardised coordinates when
        ``standardized``).
    pvalue : Mapping[str, numpy.ndarray]
        Per test, the Bonferroni combination ``min(1, P * min_j p_j)`` over the P projections,
        shape ``lead``: a valid level-alpha test of "the vector is multivariate normal" under any
        dependence between projections.
    standardized : bool
        Whether each coordinate was divided by its sample standard deviation first.
    """

    projections: GaussianityResult
    directions: np.ndarray
    pvalue: Mapping[str, np.ndarray]
    standardized: bool
    null_hypothesis: str = "the noise vectors are i.i.d. multivariate normal"

    def __repr__(self) -> str:
        parts = ", ".join(f"{t}[{array_summary(p)}]" for t, p in self.pvalue.items())
        return (
            f"ProjectionGaussianity(n_projections={self.directions.shape[0]}, "
            f"dim={self.directions.shape[1]}, combined pvalue: {parts})"
        )


# ============================================================================================
# multiple testing


def benjamini_hochberg(pvalues, level: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up procedure: which hypotheses are rejected at FDR ``level``.

    All finite p-values (any shape) form one family of m tests; reject the k smallest, where k
    is the largest i with p_(i) <= i * level / m.  NaN p-values are never rejected and do not
    count in m.

    References
    ----------
    1. Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. JRSS B 57, 289.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.zeros(p.shape, dtype=bool)
    finite = np.isfinite(p)
    m = int(finite.sum())
    if m == 0:
        return out
    ps = np.sort(p[finite])
    below = ps <= level * np.arange(1, m + 1) / m
    if below.any():
        threshold = ps[np.flatnonzero(below)[-1]]
        out[finite] = p[finite] <= threshold
    return out


# ============================================================================================
# kernels on a sorted, standardised (b, n) float64 block


@functools.lru_cache(maxsize=16)
def _shapiro_coefficients(n: int) -> np.ndarray:
    """Royston's (1992) approximation of the Shapiro-Wilk coefficients a (antisymmetric, n)."""
    if n == 3:
        return np.array([-np.sqrt(0.5), 0.0, np.sqrt(0.5)])
    i = np.arange(1, n + 1)
    m = scipy.special.ndtri((i - 0.375) / (n + 0.25))
    summ2 = float(m @ m)
    u = 1.0 / np.sqrt(n)
    c1 = np.polyval([-2.706056, 4.434685, -2.071190, -0.147981, 0.221157, 0.0], u)
    a = m / np.sqrt(summ2)
    an = c1 + a[-1]
    if n > 5:
        c2 = np.polyval([-3.582633, 5.682633, -1.752461, -0.293762, 0.042981, 0.0], u)
        an1 = c2 + a[-2]
        eps = (summ2 - 2 * m[-1] ** 2 - 2 * m[-2] ** 2) / (1 - 2 * an**2 - 2 * an1**2)
        a = m / np.sqrt(eps)
        a[-1], a[-2], a[0], a[1] = an, an1, -an, -an1
    else:
        eps = (summ2 - 2 * m[-1] ** 2) / (1 - 2 * an**2)
        a = m / np.sqrt(eps)
        a[-1], a[0] = an, -an
    return a


def _shapiro_pvalue(w: np.ndarray, n: int) -> np.ndarray:
    """Royston's (1995) normalising transformation of W (algorithm AS R94), upper tail."""
    w = np.minimum(w, 1.0)
    if n == 3:
        return np.clip(6.0 / np.pi * (np.arcsin(np.sqrt(w)) - np.arcsin(np.sqrt(0.75))), 0, 1)
    y = np.log1p(-w)
    if n <= 11:
        gamma = -2.273 + 0.459 * n
        mu = np.polyval([-0.0006714, 0.025054, -0.39978, 0.5440], n)
        sigma = np.exp(np.polyval([-0.0020322, 0.062767, -0.77857, 1.3822], n))
        with np.errstate(invalid="ignore"):
            y = np.where(y < gamma, -np.log(gamma - y), np.inf)
    else:
        ln = np.log(n)
        mu = np.polyval([0.0038915, -0.083751, -0.31082, -1.5861], ln)
        sigma = np.exp(np.polyval([0.0030302, -0.082676, -0.4803], ln))
    return scipy.special.ndtr(-(y - mu) / sigma)


def _shapiro_sample(n: int) -> np.ndarray | None:
    """Indices of the evenly spaced subsample used above SHAPIRO_MAX_N (None: all points)."""
    if n <= SHAPIRO_MAX_N:
        return None
    return np.round(np.linspace(0, n - 1, SHAPIRO_MAX_N)).astype(np.intp)


def _shapiro(xb: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W and p from the sorted standardised block ``zs`` (or a subsample of ``xb``)."""
    sample = _shapiro_sample(xb.shape[1])
    if sample is not None:
        sub = np.sort(xb[:, sample].astype(np.float64), axis=1)
        sub -= sub.mean(axis=1, keepdims=True)
        zs = sub / np.sqrt((sub * sub).sum(axis=1, keepdims=True))
        ss = 1.0
    else:
        ss = (zs * zs).sum(axis=1)
    n = zs.shape[1]
    w = (zs @ _shapiro_coefficients(n)) ** 2 / ss
    return w, _shapiro_pvalue(w, n)


def _moment_tests(zs: np.ndarray, n: int):
    """D'Agostino-Pearson K^2 and Jarque-Bera from biased sample skewness and kurtosis.

    ``zs`` is centred and scaled by the ddof=1 standard deviation; b1 and b2 use the biased
    (ddof=0) moments as in D'Agostino (1990) and Jarque & Bera (1987).
    """
    z2 = zs * zs
    m2 = z2.mean(axis=1)
    m3 = np.einsum("ij,ij->i", z2, zs) / n
    m4 = np.einsum("ij,ij->i", z2, z2) / n
    skew = m3 / m2**1.5
    kurt = m4 / m2**2
    # D'Agostino (1970) skewness test
    y = skew * np.sqrt((n + 1.0) * (n + 3) / (6.0 * (n - 2)))
    beta2 = (
        3.0 * (n**2 + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    )
    w2 = -1 + np.sqrt(2 * (beta2 - 1))
    delta = 1 / np.sqrt(0.5 * np.log(w2))
    alpha = np.sqrt(2.0 / (w2 - 1))
    # Z = delta * asinh(Y / alpha): exactly 0 at Y = 0 (an exactly symmetric sample).  scipy
    # replaces Y = 0 by 1, which adds about 1.08 to K^2 at n = 20; the published transform
    # (D'Agostino, Belanger & D'Agostino 1990, eq. 3) has no such case.
    z_skew = delta * np.arcsinh(y / alpha)
    # Anscombe & Glynn (1983) kurtosis test
    mean_b2 = 3.0 * (n - 1) / (n + 1)
    var_b2 = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5))
    xk = (kurt - mean_b2) / np.sqrt(var_b2)
    sqrt_beta1 = (
        6.0
        * (n * n - 5 * n + 2)
        / ((n + 7) * (n + 9))
        * np.sqrt(6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3)))
    )
    a = 6.0 + 8.0 / sqrt_beta1 * (2.0 / sqrt_beta1 + np.sqrt(1 + 4.0 / sqrt_beta1**2))
    term1 = 1 - 2 / (9.0 * a)
    denom = 1 + xk * np.sqrt(2 / (a - 4.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        term2 = np.sign(denom) * np.where(
            denom == 0, np.nan, ((1 - 2.0 / a) / np.abs(denom)) ** (1 / 3)
        )
    z_kurt = (term1 - term2) / np.sqrt(2 / (9.0 * a))
    k2 = z_skew**2 + z_kurt**2
    jb = n / 6.0 * (skew**2 + (kurt - 3) ** 2 / 4)
    # both statistics are chi-squared(2) under the null: sf = exp(-x / 2)
    return (k2, np.exp(-k2 / 2)), (jb, np.exp(-jb / 2))


def _anderson_pvalue(a2_star: np.ndarray) -> np.ndarray:
    """D'Agostino & Stephens (1986, Table 4.9) p-value of the modified A*^2, both parameters
    estimated; 0 above A*^2 = 13 (p < 5e-31), as statsmodels."""
    a = a2_star
    with np.errstate(over="ignore"):  # every branch is evaluated; only the chosen one is used
        return np.select(
            [a < 0.2, a < 0.34, a < 0.6, a <= 13],
            [
                -np.expm1(-13.436 + 101.14 * a - 223.73 * a**2),
                -np.expm1(-8.318 + 42.796 * a - 59.938 * a**2),
                np.exp(0.9177 - 4.279 * a - 1.38 * a**2),
                np.exp(1.2937 - 5.709 * a + 0.0186 * a**2),
            ],
            0.0,
        )


def _anderson(zs: np.ndarray, n: int):
    """Anderson-Darling A^2 on the sorted standardised block; returns (A^2, p)."""
    weights = 2.0 * np.arange(1, n + 1) - 1.0
    log_cdf = scipy.special.log_ndtr(zs)
    log_sf_rev = scipy.special.log_ndtr(-zs[:, ::-1])
    a2 = -n - (log_cdf @ weights + log_sf_rev @ weights) / n
    return a2, _anderson_pvalue(a2 * (1 + 0.75 / n + 2.25 / n**2))


def _lilliefors_stat(zs: np.ndarray, n: int) -> np.ndarray:
    """Kolmogorov-Smirnov distance between the standardised sample and N(0, 1)."""
    cdf = scipy.special.ndtr(zs)
    i = np.arange(1, n + 1)
    d_plus = (i / n - cdf).max(axis=1)
    d_minus = (cdf - (i - 1) / n).max(axis=1)
    return np.maximum(d_plus, d_minus)


@functools.lru_cache(maxsize=16)
def _lilliefors_null(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Upper-tail quantiles of sqrt(n) D at sample size n: (quantiles increasing, log alphas).

    Rows of the simulated table are interpolated linearly in 1/sqrt(n); above the largest n of
    the table its last row is used (sqrt(n) D has converged to within 0.3% there).
    """
    from . import _lilliefors_table as table

    grid = np.asarray(table.N_GRID, dtype=float)
    quantiles = np.asarray(table.QUANTILES)
    u = 1 / np.sqrt(np.clip(n, grid[0], grid[-1]))
    ug = 1 / np.sqrt(grid)  # decreasing
    row = np.array([np.interp(u, ug[::-1], col[::-1]) for col in quantiles.T])
    return row, np.log(np.asarray(table.ALPHAS))


def _lilliefors_pvalue(d: np.ndarray, n: int) -> np.ndarray:
    """p-value of the Lilliefors statistic from the simulated null table.

    Linear interpolation of log(alpha) in sqrt(n) D between tabulated quantiles (0.999 ...
    0.001); beyond the smallest tabulated tail probability the Dallal & Wilkinson (1986)
    approximation, which is accurate there, capped at 0.001; below the 0.999 quantile, 1.
    """
    q, log_alpha = _lilliefors_null(n)
    s = np.sqrt(n) * np.asarray(d, dtype=float)
    p = np.exp(np.interp(s, q, log_alpha, left=0.0, right=log_alpha[-1]))
    # Dallal & Wilkinson (1986), with their n > 100 rescaling
    dn, nd = (d, n) if n <= 100 else (d * (n / 100) ** 0.49, 100)
    dw = np.exp(
        -7.01256 * dn**2 * (nd + 2.78019)
        + 2.99587 * dn * np.sqrt(nd + 2.78019)
        - 0.122119
        + 0.974598 / np.sqrt(nd)
        + 1.67997 / nd
    )
    return np.where(s > q[-1], np.minimum(dw, np.exp(log_alpha[-1])), p)


def _battery_block(xb: np.ndarray, *, tests: tuple[str, ...]) -> np.ndarray:
    """(b, n) -> (b, 2 * len(tests)): statistic and p-value of each test, side by side."""
    n = xb.shape[1]
    xs = np.sort(xb.astype(np.float64), axis=1)
    xs -= xs.mean(axis=1, keepdims=True)
    sd = np.sqrt((xs * xs).sum(axis=1, keepdims=True) / (n - 1))
    zs = xs / sd
    out = np.empty((xb.shape[0], 2 * len(tests)))
    moments = None
    for j, test in enumerate(tests):
        if test == "shapiro":
            stat, p = _shapiro(xb, zs)
        elif test in ("dagostino", "jarque_bera"):
            if moments is None:
                moments = _moment_tests(zs, n)
            stat, p = moments[0] if test == "dagostino" else moments[1]
        elif test == "anderson":
            stat, p = _anderson(zs, n)
        else:  # lilliefors: statistic here, p-value from the table afterwards
            stat, p = _lilliefors_stat(zs, n), np.nan
        out[:, 2 * j] = stat
        out[:, 2 * j + 1] = p
    return out


def _check_tests(tests) -> tuple[str, ...]:
    if isinstance(tests, str):
        tests = (tests,)
    tests = tuple(tests)
    unknown = [t for t in tests if t not in GAUSSIANITY_TESTS]
    if unknown or not tests:
        raise SgnMemoryError(
            f"tests must be a non-empty subset of {GAUSSIANITY_TESTS}; got {tests!r}."
        )
    return tests


def _check_level(level: float) -> float:
    level = float(level)
    if not 0 < level < 1:
        raise SgnMemoryError(f"level must be in (0, 1); got {level}.")
    return level


def _battery(data: np.ndarray, n: int, tests: tuple[str, ...]) -> np.ndarray:
    """Statistics and p-values for the valid rows of a batch: (b, n) -> (b, 2 * len(tests))."""
    rows = max(1, _BLOCK_ELEMENTS // n)
    out = map_blocks(
        functools.partial(_battery_block, tests=tests), data, 2 * len(tests), rows, threads=_THREADS
    )
    if "lilliefors" in tests:
        j = tests.index("lilliefors")
        out[:, 2 * j + 1] = _lilliefors_pvalue(out[:, 2 * j], n)
    return out


def _result(batch, values: np.ndarray, tests, level: float, settings) -> GaussianityResult:
    full = batch.scatter(values)
    stats = {t: batch.unbatch(full[:, 2 * j]) for j, t in enumerate(tests)}
    pvals = {t: batch.unbatch(full[:, 2 * j + 1]) for j, t in enumerate(tests)}
    finite = int(np.isfinite(full[:, 1]).sum()) if full.size else 0
    raw, bh = {}, {}
    for t in tests:
        p = pvals[t]
        m = np.isfinite(p).sum()
        raw[t] = float((p <= level).sum() / m) if m else float("nan")
        bh[t] = float(benjamini_hochberg(p, level).sum() / m) if m else float("nan")
    return GaussianityResult(
        tests=tests,
        statistic=MappingProxyType(stats),
        pvalue=MappingProxyType(pvals),
        level=level,
        rejected_fraction=MappingProxyType(raw),
        rejected_fraction_bh=MappingProxyType(bh),
        n_obs=batch.n,
        n_series=finite,
        settings=MappingProxyType(settings),
    )


def _settings(n: int, tests) -> dict[str, Any]:
    sample = _shapiro_sample(n)
    return {
        "shapiro_subsample": None
        if sample is None
        else f"{SHAPIRO_MAX_N} evenly spaced observations of {n}",
        "pvalues": {
            "shapiro": "Royston (1995) normal approximation (AS R94)",
            "dagostino": "chi-squared(2)",
            "anderson": "D'Agostino & Stephens (1986) Table 4.9, both parameters estimated",
            "jarque_bera": "chi-squared(2) (asymptotic; conservative below n ~ 1000)",
            "lilliefors": "simulated null table (tools/make_lilliefors_table.py)",
        },
        "tests": tests,
    }


# ============================================================================================
# public


def gaussianity(
    x,
    *,
    tests: Sequence[str] = GAUSSIANITY_TESTS,
    level: float = 0.05,
    axis: int = -1,
) -> GaussianityResult:
    """Test the null hypothesis that each series is an i.i.d. sample from a normal law.

    Runs a battery of normality tests on every series at once (no Python loop over series)
    and reports, per test, statistic and p-value per series and the fraction of series rejected
    at ``level``, raw and after a Benjamini-Hochberg correction over the series.

    Parameters
    ----------
    x : array_like
        Series along ``axis``, any leading shape (coordinates, runs); float32 or float64.
    tests : sequence of str
        Any of:

        - ``"shapiro"``: Shapiro-Wilk W with Royston's (1992) coefficients and (1995) p-value
          (algorithm AS R94, as scipy and R).
        - ``"dagostino"``: D'Agostino-Pearson K^2 (skewness and kurtosis), chi-squared(2).
        - ``"anderson"``: Anderson-Darling A^2 with mean and variance estimated, p-value from
          D'Agostino & Stephens (1986) for the modified statistic A^2 (1 + 0.75/n + 2.25/n^2).
        - ``"jarque_bera"``: Jarque-Bera, chi-squared(2).
        - ``"lilliefors"``: Kolmogorov-Smirnov distance to the normal law with estimated mean
          and variance; p-value from our simulated null table (2 x 10^5 samples per n up to
          n = 1000, see ``tools/make_lilliefors_table.py``).
    level : float
        Level of the rejection fractions (and the Benjamini-Hochberg false-discovery rate).
    axis : int
        Time axis.

    Returns
    -------
    GaussianityResult

    Notes
    -----
    Where a test is not valid, and what this function then does:

    - Shapiro-Wilk: Royston's p-value approximation is fitted for 3 <= n <= 5000.  For longer
      series W is computed on 5000 evenly spaced observations (recorded in ``settings``); the
      other tests use every observation.  (scipy computes W on all points and warns.)
    - D'Agostino-Pearson needs n >= 8 (it is the reason this function needs n >= 8); its
      kurtosis part is poor below n = 20.
    - Jarque-Bera uses its asymptotic chi-squared(2) law, which is conservative for small n
      (it rejects less than ``level`` below n of a few hundred); prefer the others there.
    - Lilliefors p-values are interpolated in a simulated table between tail probabilities
      0.999 and 0.001 (Dallal-Wilkinson's approximation below 0.001).  statsmodels' table
      rejects only 3.5-4.6% at the 5% level for n = 300-1500 (``benchmarks/tails.py``); ours
      holds the level (tested).
    - Anderson-Darling p-values are 0 above A*^2 = 13 (true p < 5e-31).

    Every test assumes *independent* observations.  Gradient noise with memory (H != 1/2)
    has fewer effectively independent observations than its length, so even a Gaussian series
    with long memory is rejected more often than ``level``; compare with a shuffled copy when in
    doubt.

    On identical data the statistics and p-values agree with ``scipy.stats.shapiro``,
    ``normaltest``, ``jarque_bera`` and ``statsmodels.stats.diagnostic.normal_ad``, and the
    Lilliefors statistic with ``statsmodels.stats.diagnostic.lilliefors`` (tested).

    References
    ----------
    1. Royston, P. (1995). Remark AS R94. Applied Statistics 44, 547-551.
    2. D'Agostino, R. B., Belanger, A. & D'Agostino Jr., R. B. (1990). A suggestion for using
       powerful and informative tests of normality. The American Statistician 44, 316-321.
    3. D'Agostino, R. B. & Stephens, M. A. (1986). Goodness-of-Fit Techniques. Marcel Dekker.
    4. Jarque, C. M. & Bera, A. K. (1987). A test for normality of observations and regression
       residuals. International Statistical Review 55, 163-172.
    5. Lilliefors, H. W. (1967). On the Kolmogorov-Smirnov test for normality with mean and
       variance unknown. JASA 62, 399-402.

    Examples
    --------
    >>> import numpy as np, sgn_memory as sgn
    >>> x = np.random.default_rng(0).standard_normal((1000, 2000))
    >>> res = sgn.gaussianity(x)
    >>> res.pvalue["shapiro"].shape
    (1000,)
    """
    tests = _check_tests(tests)
    level = _check_level(level)
    batch = as_batch(x, axis, min_length=_MIN_N, estimator="gaussianity")
    values = _battery(batch.valid_rows(), batch.n, tests)
    return _result(batch, values, tests, level, _settings(batch.n, tests))


def gaussianity_projections(
    x,
    *,
    n_projections: int = 64,
    tests: Sequence[str] = GAUSSIANITY_TESTS,
    level: float = 0.05,
    standardize: bool = True,
    rng=None,
    coord_axis: int = -2,
    axis: int = -1,
) -> ProjectionGaussianity:
    """Test the null hypothesis that noise *vectors* are i.i.d. multivariate normal.

    If u_t in R^k is multivariate normal, so is every projection v.u_t.  The battery of
    :func:`gaussianity` is run on ``n_projections`` directions v drawn uniformly on the unit
    sphere, and each test's p-values are combined over directions by Bonferroni,
    ``min(1, P min_j p_j)``, which holds the level whatever the dependence between the
    projections (it is conservative; a rejection means at least one direction is not normal).

    Parameters
    ----------
    x : array_like
        Noise vectors: coordinates along ``coord_axis``, time along ``axis``; other axes are
        independent batches (e.g. runs).
    n_projections : int
        Number of random directions P.
    tests, level
        As :func:`gaussianity`.
    standardize : bool, default True
        Divide every coordinate by its sample standard deviation first, so that directions are
        not dominated by the coordinates with the largest noise (normality is unaffected by
        rescaling coordinates).
    rng : None, int or numpy.random.Generator
        Draws the directions.
    coord_axis, axis : int
        Coordinate and time axes.

    Returns
    -------
    ProjectionGaussianity

    Notes
    -----
    Random projections detect departures visible in one-dimensional marginals of the vector
    (Cuesta-Albertos, Fraiman & Ransford 2007); with P directions the test is consistent as P
    grows.  Constant coordinates contribute nothing after standardisation.

    Examples
    --------
    >>> import numpy as np, sgn_memory as sgn
    >>> u = np.random.default_rng(0).standard_normal((50, 2000))   # 50 coordinates, 2000 steps
    >>> res = sgn.gaussianity_projections(u, n_projections=16, rng=1)
    >>> float(res.pvalue["shapiro"]) > 0.05
    True
    """
    tests = _check_tests(tests)
    level = _check_level(level)
    if int(n_projections) < 1:
        raise SgnMemoryError(f"n_projections must be >= 1; got {n_projections}.")
    x = np.asarray(x, dtype=float)
    if x.ndim < 2:
        raise SgnMemoryError(
            "gaussianity_projections needs noise vectors: an array with a coordinate axis and "
            f"a time axis; got shape {x.shape}."
        )
    x = np.moveaxis(x, (coord_axis, axis), (-2, -1))
    k = x.shape[-2]
    if standardize:
        sd = x.std(axis=-1, ddof=1, keepdims=True)
        x = np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)
    gen = np.random.default_rng(rng)
    directions = gen.standard_normal((int(n_projections), k))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    projected = np.einsum("pk,...kt->...pt", directions, x)
    res = gaussianity(projected, tests=tests, level=level, axis=-1)
    combined = {
        t: np.minimum(1.0, directions.shape[0] * np.min(res.pvalue[t], axis=-1)) for t in tests
    }
    return ProjectionGaussianity(
        projections=res,
        directions=directions,
        pvalue=MappingProxyType(combined),
        standardized=bool(standardize),
    )
