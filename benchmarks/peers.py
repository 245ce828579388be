"""Peer implementations used as references in the speed/accuracy benchmarks.

Every estimator takes a 1-D float64 array of *increments* (stationary noise, e.g.
fractional Gaussian noise) and returns a Hurst estimate; every generator returns an
``(n_paths, n)`` float64 array of unit-variance fGn. The calls are configured the
way a researcher would use each package on fGn; see ``benchmarks/PEERS.md`` for
versions, timings and sanity values.

This module deliberately does not import ``sgn_memory``, so it can be used on its
own. Install the peers with ``pip install -r benchmarks/requirements.txt``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "default_lags",
    "fathon_dfa1",
    "fbm_package_fgn",
    "hurst_compute_hc",
    "hurst_compute_hc_simplified",
    "mfdfa_dfa1",
    "nolds_dfa",
    "nolds_rs",
    "stochastic_fgn",
]


def default_lags(n: int, min_lag: int = 8, max_frac: float = 0.125, num: int = 16) -> np.ndarray:
    """Log-spaced unique integer window sizes from ``min_lag`` to ``max_frac * n``.

    Only a convenience for the sanity checks; benchmarks pass their own lags.
    """
    lags = np.unique(np.round(np.geomspace(min_lag, max_frac * n, num)).astype(np.int64))
    return lags


def _slope(log_x: np.ndarray, log_y: np.ndarray) -> float:
    return float(np.polyfit(log_x, log_y, 1)[0])


# --------------------------------------------------------------------------- estimators


def nolds_dfa(x: np.ndarray) -> float:
    """nolds 0.5.2 DFA with its defaults except a plain least-squares exponent fit.

    Call: ``nolds.dfa(x, fit_exp='poly')``. Defaults kept: ``nvals =
    logarithmic_n(4, 0.1*len(x), 1.2)``, ``overlap=True`` (50 % overlapping windows),
    ``order=1``, ``fit_trend='poly'``. nolds integrates internally
    (``cumsum(x - mean(x))``) and averages the per-window RMS (mean of sqrt), so the
    slope is H for fGn input.
    """
    import nolds

    return float(nolds.dfa(x, fit_exp="poly"))


def nolds_rs(x: np.ndarray) -> float:
    """nolds 0.5.2 rescaled range with Anis-Lloyd-Peters correction.

    Call: ``nolds.hurst_rs(x, fit='poly')``. Defaults kept: ``nvals =
    logmid_n(len(x), ratio=1/4, nsteps=15)``, ``corrected=True`` (fits
    log(R/S) - log(E[R/S]_white) and adds 0.5), ``unbiased=True``.
    """
    import nolds

    return float(nolds.hurst_rs(x, fit="poly"))


def mfdfa_dfa1(x: np.ndarray, lags: np.ndarray) -> float:
    """MFDFA 0.4.3 DFA-1 (q=2) slope over ``lags``.

    Call: ``MFDFA.MFDFA(x, lag=lags, q=2, order=1)``. ``MFDFA`` takes the increments
    and integrates them itself (``Y = cumsum(x - mean(x))``); it segments the profile
    into non-overlapping windows from the start *and* from the end (2*floor(N/s)
    windows), and returns ``F_2(s) = sqrt(mean over windows of the detrended
    variance)``. Lags ``<= order + 1`` are dropped by MFDFA; the fit uses the lags it
    returns.
    """
    from MFDFA import MFDFA

    lag_out, f = MFDFA(np.asarray(x, dtype=np.float64), lag=np.asarray(lags), q=2, order=1)
    return _slope(np.log(lag_out), np.log(f[:, 0]))


def fathon_dfa1(x: np.ndarray, lags: np.ndarray) -> float:
    """fathon 1.3.3 DFA-1 slope over ``lags`` (non-overlapping, forward windows only).

    Call: ``fathon.DFA(fathonUtils.toAggregated(x)).computeFlucVec(lags, polOrd=1,
    revSeg=False)`` then ``fitFlucVec()``. fathon expects the *profile*:
    ``toAggregated`` is ``cumsum(x - mean(x))``. ``F(s)`` is the RMS of the detrended
    profile over all floor(N/s) windows (sqrt of the pooled mean square). Note: the C
    loop over window sizes is OpenMP-parallel; set ``OMP_NUM_THREADS=1`` for
    single-thread timings.
    """
    import fathon
    from fathon import fathonUtils

    profile = fathonUtils.toAggregated(np.asarray(x, dtype=np.float64))
    dfa = fathon.DFA(profile)
    dfa.computeFlucVec(np.ascontiguousarray(lags, dtype=np.int64), polOrd=1, revSeg=False)
    h, _intercept = dfa.fitFlucVec()
    return float(h)


def hurst_compute_hc(x: np.ndarray) -> float:
    """hurst 0.0.5 classical R/S on increments.

    Call: ``hurst.compute_Hc(x, kind='change', simplified=False)``; defaults kept:
    ``min_window=10``, windows ``int(10**k)`` for k in steps of 0.25 plus the full
    length, OLS in log10. ``kind='change'`` tells the package the input is
    increments. ``simplified=False`` is the textbook R/S (range of the *demeaned*
    cumulative sum of each window / its std). ``simplified=True`` instead takes the
    range of the raw cumulative sum (no mean removal), which is not the R/S
    statistic; see PEERS.md for both on white noise. No small-sample correction is
    applied by this package, so its estimate is biased upward near H=0.5.
    """
    import hurst

    h, _c, _data = hurst.compute_Hc(
        np.asarray(x, dtype=np.float64), kind="change", simplified=False
    )
    return float(h)


def hurst_compute_hc_simplified(x: np.ndarray) -> float:
    """Same as :func:`hurst_compute_hc` with the package default ``simplified=True``."""
    import hurst

    h, _c, _data = hurst.compute_Hc(np.asarray(x, dtype=np.float64), kind="change", simplified=True)
    return float(h)


# --------------------------------------------------------------------------- generators


def fbm_package_fgn(n_paths: int, n: int, H: float, seed: int | None = None) -> np.ndarray:
    """fGn paths from the ``fbm`` package (0.3.0), exact Davies-Harte, one path per call.

    Call: ``f = fbm.FBM(n, H, length=n, method='daviesharte')`` once, then
    ``f.fgn()`` per path (the object caches the circulant eigenvalues after the first
    call). ``length=n`` makes the increment variance 1. The package draws from the
    global ``np.random`` state, so ``seed`` calls ``np.random.seed``. Its
    Davies-Harte assembles the FFT input in a Python loop over 2n entries, which
    dominates the cost.
    """
    from fbm import FBM

    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002 - fbm draws from the global legacy state
    f = FBM(n, float(H), length=n, method="daviesharte")
    out = np.empty((n_paths, n), dtype=np.float64)
    for i in range(n_paths):
        out[i] = f.fgn()
    return out


def stochastic_fgn(n_paths: int, n: int, H: float, seed: int | None = None) -> np.ndarray:
    """fGn paths from the ``stochastic`` package (0.6.0), vectorised Davies-Harte.

    Call: ``p = FractionalGaussianNoise(hurst=H, t=n, rng=np.random.default_rng(seed))``
    once, then ``p.sample(n)`` per path. ``t=n`` makes the increment variance 1. The
    package has no batched sampler: ``sample`` returns one path, but the square-root
    eigenvalues are cached (``lru_cache``) so each call is one normal draw plus one
    ``irfft`` of length ``2 * 2**(n - 2).bit_length()`` (32768 for n=16384).
    ``hurst`` must be a Python float (an int raises TypeError).
    """
    from stochastic.processes.noise import FractionalGaussianNoise

    p = FractionalGaussianNoise(hurst=float(H), t=n, rng=np.random.default_rng(seed))
    out = np.empty((n_paths, n), dtype=np.float64)
    for i in range(n_paths):
        out[i] = p.sample(n)
    return out


ESTIMATORS_NO_LAGS = {
    "nolds_dfa": nolds_dfa,
    "nolds_rs": nolds_rs,
    "hurst_compute_hc": hurst_compute_hc,
}
ESTIMATORS_WITH_LAGS = {
    "mfdfa_dfa1": mfdfa_dfa1,
    "fathon_dfa1": fathon_dfa1,
}
GENERATORS = {
    "fbm_package_fgn": fbm_package_fgn,
    "stochastic_fgn": stochastic_fgn,
}
