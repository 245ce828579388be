"""Alpha-stable laws: sampling, vectorised fitting (McCulloch, Koutrouvelis/Kogon-Williams), a
goodness-of-fit test calibrated by parametric bootstrap, and the aggregation check.

Parameterisation: everything here is Nolan's S0 (continuous in alpha and beta; location is the
mode-like centre).  If X ~ S0(alpha, beta, scale, loc) then a X + b ~ S0(alpha, beta, a scale,
a loc + b) for a > 0, which is what lets every fit work on standardised data.  S1 (scipy's
default, Samorodnitsky-Taqqu) differs only in location: loc1 = loc0 - beta scale tan(pi alpha/2)
for alpha != 1, loc1 = loc0 - (2/pi) beta scale log(scale) for alpha = 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .._batch import array_summary, as_batch, map_blocks
from ..errors import DegenerateSeriesWarning, SgnMemoryError

_BLOCK_ELEMENTS = 1 << 18
_THREADS = 2
_MIN_N = 20
FIT_METHODS = ("mcculloch", "koutrouvelis", "mle")

# ============================================================================================
# results


@dataclass(frozen=True, repr=False)
class StableFit:
    """Fitted alpha-stable laws, one per series, in Nolan's S0 parameterisation.

    Attributes
    ----------
    alpha : numpy.ndarray
        Characteristic exponent in (0, 2] (2 is Gaussian with variance 2 scale^2).
    beta : numpy.ndarray
        Skewness in [-1, 1] (not identified as alpha -> 2; reported 0 at alpha = 2).
    scale, loc : numpy.ndarray
        S0 scale (gamma > 0) and location (delta).
    method : str
    n_obs : int
    parameterization : str
        Always ``"S0"``; :meth:`loc_s1` gives the S1 location.
    settings : Mapping
    """

    alpha: np.ndarray
    beta: np.ndarray
    scale: np.ndarray
    loc: np.ndarray
    method: str
    n_obs: int
    parameterization: str = "S0"
    settings: Mapping[str, Any] = field(default_factory=dict)

    def loc_s1(self) -> np.ndarray:
        """Location in the S1 parameterisation (scipy's default, Samorodnitsky & Taqqu)."""
        return s0_to_s1_loc(self.alpha, self.beta, self.scale, self.loc)

    def __repr__(self) -> str:
        return (
            f"StableFit(method={self.method!r}, S0, n_obs={self.n_obs}, "
            f"alpha[{array_summary(self.alpha)}], beta[{array_summary(self.beta)}], "
            f"scale[{array_summary(self.scale)}], loc[{array_summary(self.loc)}])"
        )


@dataclass(frozen=True, repr=False)
class StableTestResult:
    """Goodness of fit to the alpha-stable family, and the stability-under-aggregation check.

    Attributes
    ----------
    statistic, pvalue : numpy.ndarray
        Characteristic-function distance per series and its parametric-bootstrap p-value.
    fit : StableFit
        The fitted law the statistic compares with.
    aggregation_levels : tuple of int
        Block sizes m: consecutive observations summed in non-overlapping blocks of m.
    aggregation_alpha : numpy.ndarray
        Fitted alpha of the block sums, shape ``statistic.shape + (len(levels),)``.  For an
        i.i.d. stable law it does not change with m; for a finite-variance law it climbs
        towards 2 (central limit theorem).
    null_hypothesis, method, reference : str
    settings : Mapping
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    fit: StableFit
    aggregation_levels: tuple[int, ...]
    aggregation_alpha: np.ndarray
    null_hypothesis: str
    method: str
    reference: str
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def aggregation_drift(self) -> np.ndarray:
        """alpha at the largest block size minus alpha of the raw series."""
        return self.aggregation_alpha[..., -1] - self.aggregation_alpha[..., 0]

    def __repr__(self) -> str:
        return (
            f"StableTestResult(method={self.method!r}, statistic[{array_summary(self.statistic)}],"
            f" pvalue[{array_summary(self.pvalue)}], aggregation drift "
            f"[{array_summary(self.aggregation_drift)}])\n  H0: {self.null_hypothesis}"
        )


# ============================================================================================
# parameterisations and sampling


def s0_to_s1_loc(alpha, beta, scale, loc):
    """S1 location of the S0 law (alpha, beta, scale, loc)."""
    alpha, beta, scale, loc = np.broadcast_arrays(*map(np.asarray, (alpha, beta, scale, loc)))
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(
            alpha == 1,
            2 / np.pi * beta * scale * np.log(scale),
            beta * scale * np.tan(np.pi * alpha / 2),
        )
    return loc - shift


def stable_rvs(
    alpha: float,
    beta: float = 0.0,
    size=None,
    *,
    scale: float = 1.0,
    loc: float = 0.0,
    rng=None,
) -> np.ndarray:
    """Draw from the S0 stable law by the Chambers-Mallows-Stuck method.

    Uses Weron's (1996) form of Chambers, Mallows & Stuck (1976): with V ~ U(-pi/2, pi/2) and
    W ~ Exp(1), X = S sin(alpha (V + B)) / cos(V)^(1/alpha) (cos(V - alpha (V + B)) / W)^((1 -
    alpha) / alpha) is S1(alpha, beta, 1, 0) for alpha != 1 (B = arctan(beta tan(pi alpha/2)) /
    alpha, S = (1 + beta^2 tan^2(pi alpha/2))^(1/(2 alpha))), and the usual logarithmic form at
    alpha = 1; the S0 shift is then added.  With beta != 0 and alpha within ~1e-3 of 1 the two
    terms of that shift nearly cancel and lose digits.
    """
    alpha, beta = float(alpha), float(beta)
    if not 0 < alpha <= 2 or not -1 <= beta <= 1 or not scale > 0:
        raise SgnMemoryError(
            f"stable laws need 0 < alpha <= 2, -1 <= beta <= 1, scale > 0; got alpha={alpha}, "
            f"beta={beta}, scale={scale}."
        )
    gen = np.random.default_rng(rng)
    v = gen.uniform(-np.pi / 2, np.pi / 2, size)
    w = gen.standard_exponential(size)
    if alpha == 1:
        hv = np.pi / 2 + beta * v
        x = 2 / np.pi * (hv * np.tan(v) - beta * np.log(np.pi / 2 * w * np.cos(v) / hv))
        # S1 and S0 locations coincide for the standard law (alpha = 1, scale 1)
        return scale * x + loc
    t = beta * np.tan(np.pi * alpha / 2)
    b = np.arctan(t) / alpha
    s = (1 + t * t) ** (1 / (2 * alpha))
    x = (
        s
        * np.sin(alpha * (v + b))
        / np.cos(v) ** (1 / alpha)
        * (np.cos(v - alpha * (v + b)) / w) ** ((1 - alpha) / alpha)
    )
    return scale * (x - t) + loc  # standard S1 -> S0: loc0 = loc1 + beta tan(pi alpha/2)


# ============================================================================================
# McCulloch (1986) quantile estimator; tables as in scipy (Tables III-V, VII of the paper)

_NU_ALPHA = np.array([2.439, 2.5, 2.6, 2.7, 2.8, 3, 3.2, 3.5, 4, 5, 6, 8, 10, 15, 25])
_NU_BETA = np.array([0, 0.1, 0.2, 0.3, 0.5, 0.7, 1])
# psi_1: alpha(nu_alpha, nu_beta), rows nu_alpha
_PSI1 = np.array(
    [
        [2.000, 2.000, 2.000, 2.000, 2.000, 2.000, 2.000],
        [1.916, 1.924, 1.924, 1.924, 1.924, 1.924, 1.924],
        [1.808, 1.813, 1.829, 1.829, 1.829, 1.829, 1.829],
        [1.729, 1.730, 1.737, 1.745, 1.745, 1.745, 1.745],
        [1.664, 1.663, 1.663, 1.668, 1.676, 1.676, 1.676],
        [1.563, 1.560, 1.553, 1.548, 1.547, 1.547, 1.547],
        [1.484, 1.480, 1.471, 1.460, 1.448, 1.438, 1.438],
        [1.391, 1.386, 1.378, 1.364, 1.337, 1.318, 1.318],
        [1.279, 1.273, 1.266, 1.250, 1.210, 1.184, 1.150],
        [1.128, 1.121, 1.114, 1.101, 1.067, 1.027, 0.973],
        [1.029, 1.021, 1.014, 1.004, 0.974, 0.935, 0.874],
        [0.896, 0.892, 0.884, 0.883, 0.855, 0.823, 0.769],
        [0.818, 0.812, 0.806, 0.801, 0.780, 0.756, 0.691],
        [0.698, 0.695, 0.692, 0.689, 0.676, 0.656, 0.597],
        [0.593, 0.590, 0.588, 0.586, 0.579, 0.563, 0.513],
    ]
)
# psi_2: beta(nu_alpha, nu_beta), rows nu_alpha
_PSI2 = np.array(
    [
        [0, 2.160, 1.000, 1.000, 1.000, 1.000, 1.000],
        [0, 1.592, 3.390, 1.000, 1.000, 1.000, 1.000],
        [0, 0.759, 1.800, 1.000, 1.000, 1.000, 1.000],
        [0, 0.482, 1.048, 1.694, 1.000, 1.000, 1.000],
        [0, 0.360, 0.760, 1.232, 2.229, 1.000, 1.000],
        [0, 0.253, 0.518, 0.823, 1.575, 1.000, 1.000],
        [0, 0.203, 0.410, 0.632, 1.244, 1.906, 1.000],
        [0, 0.165, 0.332, 0.499, 0.943, 1.560, 1.000],
        [0, 0.136, 0.271, 0.404, 0.689, 1.230, 2.195],
        [0, 0.109, 0.216, 0.323, 0.539, 0.827, 1.917],
        [0, 0.096, 0.190, 0.284, 0.472, 0.693, 1.759],
        [0, 0.082, 0.163, 0.243, 0.412, 0.601, 1.596],
        [0, 0.074, 0.147, 0.220, 0.377, 0.546, 1.482],
        [0, 0.064, 0.128, 0.191, 0.330, 0.478, 1.362],
        [0, 0.056, 0.112, 0.167, 0.285, 0.428, 1.274],
    ]
)
_ALPHA_GRID = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2])
_BETA_GRID = np.array([0, 0.25, 0.5, 0.75, 1])
# phi_3: nu_c(alpha, beta) and phi_5: nu_zeta(alpha, beta), rows alpha ascending
_PHI3 = np.array(
    [
        [2.588, 3.073, 4.534, 6.636, 9.144],
        [2.337, 2.634, 3.542, 4.808, 6.247],
        [2.189, 2.392, 3.004, 3.844, 4.775],
        [2.098, 2.244, 2.676, 3.265, 3.912],
        [2.040, 2.149, 2.461, 2.886, 3.356],
        [2.000, 2.085, 2.311, 2.624, 2.973],
        [1.980, 2.040, 2.205, 2.435, 2.696],
        [1.965, 2.007, 2.125, 2.294, 2.491],
        [1.955, 1.984, 2.067, 2.188, 2.333],
        [1.946, 1.967, 2.022, 2.106, 2.211],
        [1.939, 1.952, 1.988, 2.045, 2.116],
        [1.933, 1.940, 1.962, 1.997, 2.043],
        [1.927, 1.930, 1.943, 1.961, 1.987],
        [1.921, 1.922, 1.927, 1.936, 1.947],
        [1.914, 1.915, 1.916, 1.918, 1.921],
        [1.908, 1.908, 1.908, 1.908, 1.908],
    ]
)
_PHI5 = np.array(
    [
        [0, -0.061, -0.279, -0.659, -1.198],
        [0, -0.078, -0.272, -0.581, -0.997],
        [0, -0.089, -0.262, -0.520, -0.853],
        [0, -0.096, -0.250, -0.469, -0.742],
        [0, -0.099, -0.237, -0.424, -0.652],
        [0, -0.098, -0.223, -0.380, -0.576],
        [0, -0.095, -0.208, -0.346, -0.508],
        [0, -0.090, -0.192, -0.310, -0.447],
        [0, -0.084, -0.173, -0.276, -0.390],
        [0, -0.075, -0.154, -0.241, -0.335],
        [0, -0.066, -0.134, -0.206, -0.283],
        [0, -0.056, -0.111, -0.170, -0.232],
        [0, -0.043, -0.088, -0.132, -0.179],
        [0, -0.030, -0.061, -0.092, -0.123],
        [0, -0.017, -0.032, -0.049, -0.064],
        [0, 0.000, 0.000, 0.000, 0.000],
    ]
)


def _bilinear(xg: np.ndarray, yg: np.ndarray, table: np.ndarray, x, y) -> np.ndarray:
    """Bilinear interpolation of ``table[i, j]`` at (x, y), clamped to the grid (vectorised)."""
    x = np.clip(x, xg[0], xg[-1])
    y = np.clip(y, yg[0], yg[-1])
    i = np.clip(np.searchsorted(xg, x, side="right") - 1, 0, xg.size - 2)
    j = np.clip(np.searchsorted(yg, y, side="right") - 1, 0, yg.size - 2)
    u = (x - xg[i]) / (xg[i + 1] - xg[i])
    v = (y - yg[j]) / (yg[j + 1] - yg[j])
    return (
        (1 - u) * (1 - v) * table[i, j]
        + u * (1 - v) * table[i + 1, j]
        + (1 - u) * v * table[i, j + 1]
        + u * v * table[i + 1, j + 1]
    )


def _mcculloch_from_quantiles(q05, q25, q50, q75, q95):
    """McCulloch's estimates (alpha, beta, scale, loc S0) from the five sample quantiles."""
    with np.errstate(invalid="ignore", divide="ignore"):
        nu_alpha = (q95 - q05) / (q75 - q25)
        nu_beta = (q95 + q05 - 2 * q50) / (q95 - q05)
    sign = np.where(nu_beta < 0, -1.0, 1.0)
    gaussian = nu_alpha < _NU_ALPHA[0]
    alpha = np.where(
        gaussian, 2.0, _bilinear(_NU_ALPHA, _NU_BETA, _PSI1, nu_alpha, np.abs(nu_beta))
    )
    alpha = np.clip(alpha, np.finfo(float).eps, 2.0)
    beta = np.clip(sign * _bilinear(_NU_ALPHA, _NU_BETA, _PSI2, nu_alpha, np.abs(nu_beta)), -1, 1)
    beta = np.where(gaussian | (alpha >= 2), 0.0, beta)
    scale = (q75 - q25) / _bilinear(_ALPHA_GRID, _BETA_GRID, _PHI3, alpha, np.abs(beta))
    zeta = q50 + scale * np.sign(beta) * _bilinear(
        _ALPHA_GRID, _BETA_GRID, _PHI5, alpha, np.abs(beta)
    )
    # a zero interquartile range (half the values or more equal: a point mass, e.g. a gradient
    # coordinate that is exactly 0 on most minibatches) identifies no stable law
    undefined = ~(q75 > q25)
    alpha, beta, scale, zeta = (np.where(undefined, np.nan, v) for v in (alpha, beta, scale, zeta))
    return alpha, beta, scale, zeta  # McCulloch's zeta is the S0 location


def _mcculloch_block(xb: np.ndarray) -> np.ndarray:
    q = np.quantile(xb, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1, method="hazen")
    return np.stack(_mcculloch_from_quantiles(*q.astype(np.float64)), axis=1)


# ============================================================================================
# Koutrouvelis regression in the Kogon & Williams (1998) form

_KW_T = 0.1 * np.arange(1, 11)  # t_k = 0.1 k, k = 1..10 (standardised data)
_KW_LOGT = np.log(_KW_T)


def _ecf(y: np.ndarray, step: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Empirical characteristic function of each row at t = step * (1..count): (b, count) x 2.

    One cosine and one sine per observation; the higher frequencies follow from the Chebyshev
    recurrences cos(kθ) = 2 cos θ cos((k-1)θ) - cos((k-2)θ) (same for sin).
    """
    theta = step * y
    c1, s1 = np.cos(theta), np.sin(theta)
    two_c1 = 2.0 * c1
    n = y.shape[1]
    re = np.empty((y.shape[0], count))
    im = np.empty((y.shape[0], count))
    c_prev, s_prev = np.ones_like(c1), np.zeros_like(s1)
    c_k, s_k = c1, s1
    for k in range(count):
        re[:, k] = c_k.sum(axis=1) / n
        im[:, k] = s_k.sum(axis=1) / n
        if k + 1 < count:
            c_next = two_c1 * c_k
            c_next -= c_prev
            s_next = two_c1 * s_k
            s_next -= s_prev
            c_prev, s_prev, c_k, s_k = c_k, s_k, c_next, s_next
    return re, im


def _s0_log_cf(t: np.ndarray, alpha, beta, scale, loc):
    """Real and imaginary parts of log phi(t) of S0 laws (t > 0), broadcast over leading axes."""
    a = alpha[..., None]
    b = beta[..., None]
    g = scale[..., None]
    gt = g * t
    real = -(gt**a)
    # tan(pi a/2) ((gt)^a - gt) -> -(2/pi) gt log(gt) as a -> 1
    with np.errstate(invalid="ignore", divide="ignore"):
        term = np.where(
            np.abs(a - 1) < 1e-8,
            -2 / np.pi * gt * np.log(gt),
            np.tan(np.pi * a / 2) * (gt**a - gt),
        )
    term = np.where(a >= 2, 0.0, term)
    imag = b * term + loc[..., None] * t
    return real, imag


def _kw_regression(re: np.ndarray, im: np.ndarray):
    """(alpha, beta, scale, loc) of standardised data from its ECF at _KW_T."""
    mod2 = re * re + im * im
    with np.errstate(invalid="ignore", divide="ignore"):
        yk = np.log(-np.log(mod2))
    xc = _KW_LOGT - _KW_LOGT.mean()
    slope = (yk - yk.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    intercept = yk.mean(axis=1) - slope * _KW_LOGT.mean()
    alpha = np.clip(slope, 0.05, 2.0)
    # -log|phi|^2 = 2 g^a t^a  =>  intercept = log 2 + a log g (with the fitted, unclipped slope)
    scale = np.exp((intercept - np.log(2.0)) / np.where(slope > 0, slope, np.nan))
    beta, loc = _kw_location(re, im, alpha, scale)
    return alpha, beta, scale, loc


def _kw_location(re: np.ndarray, im: np.ndarray, alpha: np.ndarray, scale: np.ndarray):
    """beta and loc from arg phi_n(t) = loc t + beta tan(pi a/2) ((g t)^a - g t) at _KW_T."""
    arg = np.arctan2(im, re)
    _, z = _s0_log_cf(_KW_T, alpha, np.ones_like(alpha), scale, np.zeros_like(alpha))
    t = _KW_T
    stt = t @ t
    szz = (z * z).sum(axis=1)
    stz = z @ t
    sta = arg @ t
    sza = (z * arg).sum(axis=1)
    det = stt * szz - stz * stz
    identified = det > 1e-12 * stt * np.maximum(szz, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(identified, (stt * sza - stz * sta) / det, 0.0)
        loc = np.where(identified, (szz * sta - stz * sza) / det, sta / stt)
    return np.clip(beta, -1, 1), loc


_GLS_STEP, _GLS_COUNT = 0.1, 20  # t = 0.1 .. 2.0 for the weighted alpha regression
_GLS_T = _GLS_STEP * np.arange(1, _GLS_COUNT + 1)
_GLS_MIN_PHI = 0.05  # frequencies where the fitted |phi| < 0.05 carry only noise: left out


def _gls_alpha_scale(re: np.ndarray, im: np.ndarray, alpha: np.ndarray, n: int):
    """Generalised least squares of log(-log|phi_n(t)|^2) on log t, weighted by its covariance.

    The covariance is the delta-method one for a symmetric law with the current alpha and unit
    scale: Cov(Re phi_n(s), Re phi_n(t)) = [(phi(s+t) + phi(s-t))/2 - phi(s) phi(t)] / n and
    d y / d Re phi_n = 1 / (phi log phi).  Weighting makes the choice of frequencies matter
    little and brings the alpha RMSE to that of maximum likelihood.
    """
    t = _GLS_T
    a = np.clip(alpha, 0.1, 2.0)[:, None, None]

    def phi(u):
        return np.exp(-(np.abs(u) ** a))

    s_, t_ = t[None, :, None], t[None, None, :]
    cov = (0.5 * (phi(s_ + t_) + phi(s_ - t_)) - phi(s_) * phi(t_)) / n
    ph = np.exp(-(t[None, :] ** a[:, :, 0]))
    d = 1.0 / (ph * np.log(ph))
    cov *= d[:, :, None] * d[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(-np.log(re * re + im * im))
    drop = (ph < _GLS_MIN_PHI) | ~np.isfinite(y)
    diag = np.arange(t.size)
    cov[:, diag, diag] += np.where(drop, 1e6 * cov[:, diag, diag].max(axis=1, keepdims=True), 0)
    y = np.where(drop, 0.0, y)
    design = np.stack([np.ones_like(t), np.log(t)], axis=1)  # (K, 2)
    weighted = np.linalg.solve(cov, np.broadcast_to(design, (y.shape[0], *design.shape)))
    lhs = np.einsum("ki,bkj->bij", design, weighted)
    rhs = np.einsum("bki,bk->bi", weighted, y)
    intercept, slope = np.linalg.solve(lhs, rhs[..., None])[..., 0].T
    # alpha is capped at 2: there, refit the intercept with the slope held at 2
    capped = slope > 2
    ones_w = weighted[:, :, 0]  # Sigma^-1 1
    intercept = np.where(
        capped,
        np.einsum("bk,bk->b", ones_w, y - 2 * np.log(t)) / ones_w.sum(axis=1),
        intercept,
    )
    alpha = np.minimum(slope, 2.0)
    return alpha, np.exp((intercept - np.log(2.0)) / np.where(alpha > 0, alpha, np.nan))


def _koutrouvelis_block(xb: np.ndarray) -> np.ndarray:
    """McCulloch start, one Kogon-Williams pass, then a weighted pass (see fit_stable)."""
    xb = xb.astype(np.float64)
    _, _, scale, loc = _mcculloch_block(xb).T
    undefined = ~np.isfinite(scale)
    if undefined.any():  # computed on placeholders (no overflow), returned as NaN
        scale, loc = np.where(undefined, 1.0, scale), np.where(undefined, 0.0, loc)
    y = (xb - loc[:, None]) / scale[:, None]
    re, im = _ecf(y, 0.1, _KW_T.size)
    alpha, beta, g, d = _kw_regression(re, im)
    loc, scale = loc + scale * d, scale * g
    # second pass on data standardised by the first: weighted alpha and scale, then beta, loc
    y = (xb - loc[:, None]) / scale[:, None]
    re, im = _ecf(y, _GLS_STEP, _GLS_COUNT)
    alpha, g = _gls_alpha_scale(re, im, alpha, xb.shape[1])
    alpha = np.maximum(alpha, 0.05)
    beta, d = _kw_location(re[:, : _KW_T.size], im[:, : _KW_T.size], alpha, g)
    loc, scale = loc + scale * d, scale * g
    out = np.stack([alpha, np.where(alpha >= 2, 0.0, beta), scale, loc], axis=1)
    out[undefined] = np.nan
    return out


# ============================================================================================
# public: fit_stable


def _warn_unfitted(alpha: np.ndarray, estimator: str) -> None:
    """One warning for the series no stable law was fitted to (zero interquartile range)."""
    n_bad = int(np.isnan(alpha).sum())
    if n_bad:
        warnings.warn(
            f"{estimator}: {n_bad} of {alpha.size} series have a zero interquartile range (half "
            "their values or more are equal, a point mass no stable law has); their estimates "
            "are NaN.",
            DegenerateSeriesWarning,
            stacklevel=3,
        )


def _fit_kernel(data: np.ndarray, method: str) -> np.ndarray:
    """(b, n) -> (b, 4) columns alpha, beta, scale, loc (S0)."""
    rows = max(1, _BLOCK_ELEMENTS // data.shape[1])
    if method == "mcculloch":
        kernel = _mcculloch_block
    else:
        kernel = _koutrouvelis_block
    return map_blocks(kernel, data, 4, rows, threads=_THREADS)


def _mle_rows(data: np.ndarray, start: np.ndarray) -> np.ndarray:
    """scipy's maximum likelihood per series, started at ``start`` (S0 rows)."""
    from scipy import stats

    s1 = stats.levy_stable.parameterization == "S1"
    out = np.empty((data.shape[0], 4))
    for i, (row, (a, b, g, d)) in enumerate(zip(data, start, strict=True)):
        d_start = float(s0_to_s1_loc(a, b, g, d)) if s1 else d
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fa, fb, fd, fg = stats.levy_stable.fit(
                row.astype(np.float64), a, b, loc=d_start, scale=g
            )
        if s1:  # loc0 = loc1 + (loc0 - loc1) of the fitted law
            fd = fd - float(s0_to_s1_loc(fa, fb, fg, 0.0))
        out[i] = fa, fb, fg, fd
    return out


def fit_stable(
    x,
    *,
    method: Literal["mcculloch", "koutrouvelis", "mle"] = "koutrouvelis",
    axis: int = -1,
) -> StableFit:
    """Fit a four-parameter alpha-stable law to each series (S0 parameterisation).

    Parameters
    ----------
    x : array_like
        Samples along ``axis``, any leading shape; at least 20 per series.
    method : {"koutrouvelis", "mcculloch", "mle"}
        - ``"koutrouvelis"`` (default): characteristic-function regression of Koutrouvelis
          (1980) in the form of Kogon & Williams (1998): standardise by McCulloch's estimates,
          regress log(-log|phi_n(t)|^2) on log t and arg phi_n(t) on the S0 imaginary part at
          t = 0.1, ..., 1.0; then re-standardise with the result and repeat once.  Vectorised
          over series.
        - ``"mcculloch"``: McCulloch's (1986) quantile method (5%, 25%, 50%, 75%, 95% sample
          quantiles with p = (i - 1/2)/n, his tables interpolated bilinearly), vectorised.
          Fastest; alpha RMSE 0.036 / 0.046 / 0.069 / 0.063 at alpha 1.2 / 1.5 / 1.8 / 2.0
          (n = 2000) against 0.032 / 0.037 / 0.032 / 0.004 for the default
          (``benchmarks/tails.py``).
        - ``"mle"``: scipy's ``levy_stable.fit`` per series, started at the default's estimate.
          Slow (minutes per series of 2000): use it for a handful of series.
    axis : int
        Sample axis.

    Returns
    -------
    StableFit

    Notes
    -----
    alpha is restricted to (0, 2]; beta is not identified as alpha -> 2 and is reported as 0
    at alpha = 2.  The fits assume i.i.d. samples; dependence (memory) leaves them consistent
    but widens their spread.

    Accuracy (symmetric stable samples of 2000, 200 replicates, ``benchmarks/stable_fit.py``):
    see the README table.

    References
    ----------
    1. McCulloch, J. H. (1986). Simple consistent estimators of stable distribution parameters.
       Communications in Statistics - Simulation and Computation 15, 1109-1136.
    2. Koutrouvelis, I. A. (1980). Regression-type estimation of the parameters of stable laws.
       JASA 75, 918-928.
    3. Kogon, S. M. & Williams, D. B. (1998). Characteristic function based estimation of stable
       distribution parameters. In: A Practical Guide to Heavy Tails, Birkhauser, 311-335.
    4. Nolan, J. P. (2020). Univariate Stable Distributions. Springer (S0 parameterisation).

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> from sgn_memory.tails import stable_rvs
    >>> x = stable_rvs(1.5, 0.0, size=(100, 2000), rng=0)
    >>> fit = sgn.fit_stable(x)
    >>> bool(abs(fit.alpha.mean() - 1.5) < 0.02)
    True
    """
    if method not in FIT_METHODS:
        raise SgnMemoryError(f"method must be one of {FIT_METHODS}; got {method!r}.")
    batch = as_batch(x, axis, min_length=_MIN_N, estimator="fit_stable")
    data = batch.valid_rows()
    params = _fit_kernel(data, "mcculloch" if method == "mcculloch" else "koutrouvelis")
    if method == "mle":
        if data.shape[0] > 20:
            warnings.warn(
                f"fit_stable(method='mle') fits {data.shape[0]} series one by one with scipy; "
                "expect minutes per series.",
                RuntimeWarning,
                stacklevel=2,
            )
        fitted = np.isfinite(params[:, 0])
        params[fitted] = _mle_rows(data[fitted], params[fitted])
    _warn_unfitted(params[:, 0], "fit_stable")
    full = batch.scatter(params)
    return StableFit(
        alpha=batch.unbatch(full[:, 0]),
        beta=batch.unbatch(full[:, 1]),
        scale=batch.unbatch(full[:, 2]),
        loc=batch.unbatch(full[:, 3]),
        method=method,
        n_obs=batch.n,
        settings=MappingProxyType(
            {"ecf_points": "t = 0.1 .. 1.0 (OLS pass), 0.1 .. 2.0 (weighted pass), standardised"}
            if method == "koutrouvelis"
            else {"quantiles": "hazen, p = (i - 1/2)/n"}
            if method == "mcculloch"
            else {"optimizer": "scipy.stats.levy_stable.fit"}
        ),
    )


# ============================================================================================
# public: stable_test

_GOF_STEP, _GOF_COUNT = 0.1, 30  # t = 0.1 .. 3.0 on data standardised by the fit
_GOF_T = _GOF_STEP * np.arange(1, _GOF_COUNT + 1)
_GOF_W = np.exp(-0.5 * _GOF_T**2) * _GOF_STEP  # weight exp(-t^2/2), rectangle rule
_AGGREGATION_LEVELS = (1, 2, 4, 8)


def _gof_statistic(xb: np.ndarray, params: np.ndarray) -> np.ndarray:
    """n * sum_k w_k |phi_n(t_k) - phi_fit(t_k)|^2 on data standardised by the fit."""
    alpha, beta, scale, loc = params.T
    y = (xb - loc[:, None]) / scale[:, None]
    re, im = _ecf(y, _GOF_STEP, _GOF_COUNT)
    lr, li = _s0_log_cf(_GOF_T, alpha, beta, np.ones_like(alpha), np.zeros_like(alpha))
    mod = np.exp(lr)
    dr = re - mod * np.cos(li)
    di = im - mod * np.sin(li)
    return xb.shape[1] * ((dr * dr + di * di) @ _GOF_W)


def _gof_block(xb: np.ndarray) -> np.ndarray:
    xb = xb.astype(np.float64)
    params = _koutrouvelis_block(xb)
    return np.concatenate([params, _gof_statistic(xb, params)[:, None]], axis=1)


def _aggregate(data: np.ndarray, m: int) -> np.ndarray:
    n = data.shape[1] // m
    return data[:, : n * m].reshape(data.shape[0], n, m).sum(axis=2)


def stable_test(
    x,
    *,
    n_bootstrap: int = 200,
    aggregation_levels: Sequence[int] = _AGGREGATION_LEVELS,
    alpha_step: float = 0.05,
    beta_step: float = 0.2,
    rng=0,
    axis: int = -1,
) -> StableTestResult:
    """Test the null hypothesis that each series is i.i.d. alpha-stable (any alpha, beta, scale,
    location), and check stability under aggregation.

    Statistic: the weighted characteristic-function distance between the data standardised by
    its fitted law, y = (x - loc)/scale, and that law,
    T = n sum_k w(t_k) |phi_n(t_k) - phi(t_k; alpha, beta, 1, 0)|^2, t_k = 0.1, ..., 3.0,
    w(t) = exp(-t^2/2) dt (the approach of Matsui & Takemura 2008 and Meintanis 2005).

    p-value: parametric bootstrap.  T is invariant to location and scale (the fit is affine
    equivariant), so its null law depends on (alpha, beta) and n only.  Series are grouped by
    their fitted (alpha, beta) on a grid of ``alpha_step`` x ``beta_step``; for each occupied
    cell ``n_bootstrap`` stable samples of length n are drawn at the cell's centre, refitted
    with the same method, and p = (1 + #{T_b >= T}) / (n_bootstrap + 1).  Sharing draws within
    a cell replaces (alpha_hat, beta_hat) by the cell centre, a change smaller than the
    estimation error at the default steps.

    Aggregation: alpha is refitted on sums of consecutive non-overlapping blocks of m
    observations for every m in ``aggregation_levels``.  A stable law keeps its alpha; a
    finite-variance law drifts towards 2.  (With memory, block sums are not independent and the
    check is only indicative.)

    Parameters
    ----------
    x : array_like
        Samples along ``axis``; at least 20 per series and 20 per block sum.
    n_bootstrap : int
        Bootstrap replicates per (alpha, beta) cell.
    aggregation_levels : sequence of int
        Block sizes m (1 = the raw series).
    alpha_step, beta_step : float
        Calibration grid.
    rng : None, int or numpy.random.Generator
        For the bootstrap draws (default 0: reproducible p-values).
    axis : int

    Returns
    -------
    StableTestResult

    References
    ----------
    1. Matsui, M. & Takemura, A. (2008). Goodness-of-fit tests for symmetric stable
       distributions - empirical characteristic function approach. TEST 17, 546-566.
    2. Meintanis, S. G. (2005). Consistent tests for symmetric stability with finite mean based
       on the empirical characteristic function. J. Statist. Plann. Inference 128, 373-380.
    """
    if int(n_bootstrap) < 19:
        raise SgnMemoryError(f"n_bootstrap must be >= 19; got {n_bootstrap}.")
    levels = tuple(int(m) for m in aggregation_levels)
    if not levels or min(levels) < 1:
        raise SgnMemoryError(f"aggregation_levels must be positive integers; got {levels}.")
    batch = as_batch(x, axis, min_length=_MIN_N * max(levels), estimator="stable_test")
    data = batch.valid_rows()
    n = batch.n
    rows = max(1, _BLOCK_ELEMENTS // n)
    res = map_blocks(_gof_block, data, 5, rows, threads=_THREADS)
    params, stat = res[:, :4], res[:, 4]

    gen = np.random.default_rng(rng)
    a_cell = np.clip(np.round(params[:, 0] / alpha_step) * alpha_step, alpha_step, 2.0)
    b_cell = np.clip(np.round(params[:, 1] / beta_step) * beta_step, -1.0, 1.0)
    b_cell = np.where(a_cell >= 2, 0.0, b_cell)
    pvalue = np.full(stat.shape, np.nan)
    fitted = np.isfinite(a_cell) & np.isfinite(b_cell)  # no fit, no test: p-value NaN
    cells = np.unique(np.stack([a_cell[fitted], b_cell[fitted]], axis=1), axis=0)
    for a_c, b_c in cells:
        members = (a_cell == a_c) & (b_cell == b_c)
        sims = stable_rvs(a_c, b_c, size=(int(n_bootstrap), n), rng=gen)
        null = map_blocks(_gof_block, sims, 5, rows, threads=_THREADS)[:, 4]
        null = np.sort(null[np.isfinite(null)])
        exceed = null.size - np.searchsorted(null, stat[members], side="left")
        pvalue[members] = (1 + exceed) / (null.size + 1)
    pvalue[~np.isfinite(stat)] = np.nan
    _warn_unfitted(params[:, 0], "stable_test")

    agg = np.empty((data.shape[0], len(levels)))
    for j, m in enumerate(levels):
        agg[:, j] = (
            params[:, 0] if m == 1 else _fit_kernel(_aggregate(data, m), "koutrouvelis")[:, 0]
        )

    full = batch.scatter(np.concatenate([params, stat[:, None], pvalue[:, None], agg], axis=1))
    fit = StableFit(
        alpha=batch.unbatch(full[:, 0]),
        beta=batch.unbatch(full[:, 1]),
        scale=batch.unbatch(full[:, 2]),
        loc=batch.unbatch(full[:, 3]),
        method="koutrouvelis",
        n_obs=n,
    )
    return StableTestResult(
        statistic=batch.unbatch(full[:, 4]),
        pvalue=batch.unbatch(full[:, 5]),
        fit=fit,
        aggregation_levels=levels,
        aggregation_alpha=batch.unbatch(full[:, 6:]),
        null_hypothesis="each series is i.i.d. alpha-stable for some alpha, beta, scale, loc",
        method="ecf-distance",
        reference=f"parametric bootstrap, {int(n_bootstrap)} draws per (alpha, beta) cell of "
        f"{alpha_step} x {beta_step}",
        settings=MappingProxyType(
            {
                "t": "0.1 .. 3.0 (30 points), weight exp(-t^2/2)",
                "cells": int(cells.shape[0]),
                "n_bootstrap": int(n_bootstrap),
            }
        ),
    )
