"""Exact fractional Gaussian noise (fGn) and fractional Brownian motion (fBM).

fGn with Hurst exponent H is the stationary Gaussian sequence with unit variance and
autocovariance

    gamma(k) = (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H}) / 2,

the increments of fBM B^H on the unit grid.  Three exact methods generate it:

``"davies-harte"``
    Circulant embedding (Davies & Harte 1987; Wood & Chan 1994), O(n log n) per path, batched
    over paths with real FFTs.  The default.
``"hosking"``
    Durbin-Levinson recursion (Hosking 1984), O(n^2) per path, vectorised across paths.
``"cholesky"``
    Cholesky factor of the n x n Toeplitz covariance, O(n^3) once plus O(n^2) per path.  The
    reference for small n.

All three draw from exactly the same Gaussian law; they differ in speed only.

References
----------
1. R. B. Davies and D. S. Harte, "Tests for Hurst effect", Biometrika 74 (1987) 95-101.
2. A. T. A. Wood and G. Chan, "Simulation of stationary Gaussian processes in [0,1]^d",
   J. Comput. Graph. Statist. 3 (1994) 409-432.
3. J. R. M. Hosking, "Modeling persistence in hydrological time series using fractional
   differencing", Water Resour. Res. 20 (1984) 1898-1908.
4. P. F. Craigmile, "Simulating a class of stationary Gaussian processes using the Davies-Harte
   algorithm, with application to long memory processes", J. Time Ser. Anal. 24 (2003) 505-511.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import numbers
import os
import warnings
from typing import Literal

import numpy as np
import scipy.fft
import scipy.linalg

from .errors import EmbeddingWarning, SgnMemoryError

__all__ = ["fbm", "fgn", "fgn_autocovariance"]

Method = Literal["davies-harte", "hosking", "cholesky"]
_METHODS = ("davies-harte", "hosking", "cholesky")
# Relative size of a negative circulant eigenvalue that is taken as round-off, not indefiniteness.
_EIG_TOL = 1e-10
# Memory (bytes) of one block of Davies-Harte spectra; blocks are drawn in parallel threads.
_BLOCK_BYTES = 8 * 2**20
_THREADS = min(8, os.cpu_count() or 1)


def fgn_autocovariance(hurst, lags) -> np.ndarray:
    """Autocovariance of unit-variance fractional Gaussian noise.

    Parameters
    ----------
    hurst : float or array_like
        Hurst exponent(s) in (0, 1); broadcast against ``lags``.
    lags : int or array_like of int
        Lags k (any sign; gamma(-k) = gamma(k)).

    Returns
    -------
    numpy.ndarray
        gamma(k) = (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H}) / 2, with gamma(0) = 1.

    Notes
    -----
    For k >= 2 the second difference is evaluated as
    k^{2H} (expm1(2H log1p(1/k)) + expm1(2H log1p(-1/k))) / 2, which loses about log10(k) digits
    instead of the 2 log10(k) of the textbook form.  For large k, gamma(k) ~ H(2H-1) k^{2H-2}.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> sgn.fgn_autocovariance(0.5, [0, 1, 2]).tolist()
    [1.0, 0.0, 0.0]
    """
    hurst = np.asarray(hurst, dtype=float)
    _check_hurst(hurst)
    k = np.abs(np.asarray(lags, dtype=float))
    h2 = 2.0 * np.broadcast_to(hurst, np.broadcast_shapes(hurst.shape, k.shape))
    k = np.broadcast_to(k, h2.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        big = k >= 2
        kk = np.where(big, k, 2.0)
        stable = (
            0.5 * kk**h2 * (np.expm1(h2 * np.log1p(1.0 / kk)) + np.expm1(h2 * np.log1p(-1.0 / kk)))
        )
        direct = 0.5 * (np.abs(k + 1) ** h2 - 2 * k**h2 + np.abs(k - 1) ** h2)
    out = np.where(big, stable, direct)
    return out if out.ndim else out[()]


def fgn(
    n: int,
    hurst: float,
    size=None,
    *,
    method: Method = "davies-harte",
    rng=None,
    dtype=np.float64,
) -> np.ndarray:
    """Draw exact fractional Gaussian noise.

    Parameters
    ----------
    n : int
        Number of increments per path (>= 1).
    hurst : float
        Hurst exponent in (0, 1).  H = 1/2 is white noise.
    size : int or tuple of int, optional
        Leading shape (number of paths).  ``None`` gives a single path of shape ``(n,)``.
    method : {"davies-harte", "hosking", "cholesky"}
        Generation method; all are exact (see the module docstring).  If the circulant embedding
        of Davies-Harte is not non-negative definite (it always is for fGn in theory; round-off
        could break it), the function warns with :class:`~sgn_memory.errors.EmbeddingWarning`
        and uses ``"hosking"``.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Source of randomness, passed to :func:`numpy.random.default_rng`.
    dtype : {numpy.float64, numpy.float32}
        Output precision.  float32 halves memory and is faster with Davies-Harte.

    Returns
    -------
    numpy.ndarray
        Shape ``(*size, n)``: unit-variance increments of B^H on the unit grid.  Scale them by
        ``dt**hurst`` for a grid of step ``dt``.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> x = sgn.fgn(4096, 0.7, size=3, rng=0)
    >>> x.shape
    (3, 4096)
    """
    n = _check_n(n)
    hurst = float(hurst)
    _check_hurst(hurst)
    shape = _check_size(size)
    if method not in _METHODS:
        raise SgnMemoryError(f"method must be one of {', '.join(_METHODS)}; got {method!r}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise SgnMemoryError(f"dtype must be float32 or float64; got {dtype}.")
    rng = np.random.default_rng(rng)
    n_paths = math.prod(shape)
    if method == "davies-harte":
        sqrt_eig = _davies_harte_sqrt_eigenvalues(n, hurst)
        if sqrt_eig is None:
            warnings.warn(
                f"the circulant embedding of fGn(H={hurst}) with n={n} is not non-negative "
                "definite; using the exact Hosking method instead (slower).",
                EmbeddingWarning,
                stacklevel=2,
            )
            method = "hosking"
        else:
            out = _davies_harte(n, sqrt_eig, n_paths, rng, dtype)
    if method == "hosking":
        out = _hosking(n, hurst, n_paths, rng).astype(dtype, copy=False)
    elif method == "cholesky":
        out = _cholesky(n, hurst, n_paths, rng).astype(dtype, copy=False)
    return out.reshape(*shape, n)


def fbm(
    n: int,
    hurst: float,
    size=None,
    *,
    length: float = 1.0,
    method: Method = "davies-harte",
    rng=None,
    dtype=np.float64,
) -> np.ndarray:
    """Draw exact fractional Brownian motion on a regular grid of [0, length].

    Parameters
    ----------
    n : int
        Number of steps; the path has n + 1 points, at times t_k = k * length / n.
    hurst : float
        Hurst exponent in (0, 1).
    size : int or tuple of int, optional
        Leading shape (number of paths).
    length : float
        Time horizon (> 0).
    method, rng, dtype
        As in :func:`fgn`.

    Returns
    -------
    numpy.ndarray
        Shape ``(*size, n + 1)``, starting at 0, with Var B^H(t) = t^{2H}.

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> path = sgn.fbm(1000, 0.3, length=2.0, rng=1)
    >>> path.shape, float(path[0])
    ((1001,), 0.0)
    """
    if not (isinstance(length, numbers.Real) and math.isfinite(length) and length > 0):
        raise SgnMemoryError(f"length must be a positive finite number; got {length!r}.")
    increments = fgn(n, hurst, size, method=method, rng=rng, dtype=dtype)
    increments *= (length / n) ** hurst
    path = np.zeros((*increments.shape[:-1], n + 1), dtype=increments.dtype)
    np.cumsum(increments, axis=-1, out=path[..., 1:])
    return path


# --------------------------------------------------------------------------------------------
# validation


def _check_hurst(hurst) -> None:
    h = np.asarray(hurst, dtype=float)
    if not np.all((h > 0) & (h < 1)):
        raise SgnMemoryError(f"hurst must lie strictly between 0 and 1; got {hurst!r}.")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise SgnMemoryError(f"n must be a positive integer; got {n!r}.")
    return int(n)


def _check_size(size) -> tuple[int, ...]:
    if size is None:
        return ()
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size,)
    try:
        shape = tuple(size)
    except TypeError:
        raise SgnMemoryError(
            f"size must be None, an int or a tuple of ints; got {size!r}."
        ) from None
    if not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise SgnMemoryError(f"size must hold non-negative integers; got {size!r}.")
    return tuple(int(s) for s in shape)


# --------------------------------------------------------------------------------------------
# kernels


def _embedding_size(n: int) -> int:
    """Even circulant size m >= 2n with a fast real FFT (a larger embedding is still exact)."""
    return 2 * scipy.fft.next_fast_len(n, real=True)


@functools.lru_cache(maxsize=32)
def _davies_harte_sqrt_eigenvalues(n: int, hurst: float) -> np.ndarray | None:
    """sqrt of the circulant eigenvalues, scaled for :func:`_davies_harte`; None if indefinite."""
    m = _embedding_size(n)
    half = m // 2
    gamma = fgn_autocovariance(hurst, np.arange(half + 1))
    row = np.concatenate([gamma, gamma[-2:0:-1]])  # first row of the symmetric circulant
    eig = scipy.fft.rfft(row).real  # length half + 1
    if eig.min() < -_EIG_TOL * eig.max():
        return None
    eig = np.clip(eig, 0.0, None)
    # Hermitian spectrum w_j = sqrt(m * eig_j) * eta_j with eta complex N(0,1) (real at j = 0 and
    # j = m/2) gives irfft(w) covariance exactly equal to the circulant.  Pre-scale here.
    scale = np.sqrt(m * eig / 2.0)
    scale[0] *= math.sqrt(2.0)
    scale[-1] *= math.sqrt(2.0)
    scale.setflags(write=False)
    return scale


def _davies_harte(n: int, sqrt_eig: np.ndarray, n_paths: int, rng, dtype) -> np.ndarray:
    """Draw paths in blocks of at most _BLOCK_BYTES of spectra, the blocks on all cores.

    Each block has its own generator seeded from ``rng`` (one integer per block, drawn up front),
    so the draws depend on ``rng``, n and the number of paths only, never on the thread count.
    """
    m = 2 * (sqrt_eig.size - 1)
    out = np.empty((n_paths, n), dtype=dtype)
    scale = sqrt_eig.astype(dtype)
    per_path = 2 * sqrt_eig.size * dtype.itemsize
    block = max(1, _BLOCK_BYTES // per_path)
    starts = range(0, n_paths, block)
    seeds = rng.integers(0, 2**63 - 1, size=len(starts))
    complex_dtype = np.complex64 if dtype == np.float32 else np.complex128

    def draw(start: int, seed) -> None:
        stop = min(start + block, n_paths)
        # real and imaginary parts side by side, viewed as complex without a copy; irfft ignores
        # the imaginary parts at frequency 0 and m/2 (the Hermitian spectrum is real there).
        z = np.random.default_rng(seed).standard_normal(
            (stop - start, sqrt_eig.size, 2), dtype=dtype
        )
        spectrum = z.view(complex_dtype)[..., 0]
        spectrum *= scale
        out[start:stop] = scipy.fft.irfft(spectrum, m, axis=-1)[:, :n]

    if len(starts) == 1 or _THREADS == 1:
        for start, seed in zip(starts, seeds, strict=True):
            draw(start, seed)
    else:
        # numpy's generators and scipy's FFT release the GIL
        with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
            list(pool.map(draw, starts, seeds))
    return out


def _hosking(n: int, hurst: float, n_paths: int, rng) -> np.ndarray:
    """Durbin-Levinson: x_t = sum_j phi_{t,j} x_{t-j} + sqrt(v_t) z_t, vectorised over paths."""
    gamma = fgn_autocovariance(hurst, np.arange(n))
    z = rng.standard_normal((n_paths, n))
    # Time runs along axis 0 so each step reads a contiguous block of past values.
    x = np.empty((n, n_paths))
    v = gamma[0]
    x[0] = math.sqrt(v) * z[:, 0]
    phi = np.empty(0)
    for t in range(1, n):
        k = (gamma[t] - phi @ gamma[t - 1 : 0 : -1]) / v if t > 1 else gamma[1] / v
        phi = np.concatenate([phi - k * phi[::-1], [k]])
        v *= 1.0 - k * k
        # phi[j] multiplies x_{t-1-j}; phi[::-1] lines up with x[0:t].
        x[t] = phi[::-1] @ x[:t] + math.sqrt(v) * z[:, t]
    return np.ascontiguousarray(x.T)


def _cholesky(n: int, hurst: float, n_paths: int, rng) -> np.ndarray:
    gamma = fgn_autocovariance(hurst, np.arange(n))
    lower = scipy.linalg.cholesky(scipy.linalg.toeplitz(gamma), lower=True)
    z = rng.standard_normal((n_paths, n))
    return z @ lower.T
