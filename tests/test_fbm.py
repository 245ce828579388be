"""fGn / fBM generation: exact covariance, exact law, reproducibility, errors."""

import importlib

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

import sgn_memory as sgn
from sgn_memory.errors import EmbeddingWarning, SgnMemoryError

# the attribute sgn_memory.fbm is the function; the module is reached through importlib
fbm_module = importlib.import_module("sgn_memory.fbm")

METHODS = ["davies-harte", "hosking", "cholesky"]
HURSTS = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


def fbm_covariance(hurst, times):
    t = np.asarray(times, dtype=float)
    return 0.5 * (
        t[:, None] ** (2 * hurst)
        + t[None, :] ** (2 * hurst)
        - np.abs(t[:, None] - t[None, :]) ** (2 * hurst)
    )


# ------------------------------------------------------------------ autocovariance


def test_autocovariance_known_values():
    h = 0.7
    k = np.arange(0, 6)
    direct = 0.5 * (np.abs(k + 1) ** (2 * h) - 2 * np.abs(k) ** (2 * h) + np.abs(k - 1) ** (2 * h))
    np.testing.assert_allclose(sgn.fgn_autocovariance(h, k), direct, rtol=1e-13, atol=1e-15)
    assert sgn.fgn_autocovariance(h, 0) == 1.0
    np.testing.assert_allclose(sgn.fgn_autocovariance(h, -k), sgn.fgn_autocovariance(h, k))
    # white noise
    np.testing.assert_array_equal(sgn.fgn_autocovariance(0.5, [0, 1, 2, 50]), [1, 0, 0, 0])
    # gamma(1) = 2^{2H-1} - 1
    for h in HURSTS:
        assert sgn.fgn_autocovariance(h, 1) == pytest.approx(2 ** (2 * h - 1) - 1, rel=1e-13)


@pytest.mark.parametrize("hurst", [0.2, 0.7, 0.95])
def test_autocovariance_large_lag_asymptotics(hurst):
    # gamma(k) = H(2H-1) k^{2H-2} (1 + (2H-2)(2H-3)/12 k^-2 + O(k^-4)); exact to ~1e-9 at k >= 1e3
    k = np.array([1e3, 1e4, 1e6, 1e8])
    leading = hurst * (2 * hurst - 1) * k ** (2 * hurst - 2)
    second = leading * (2 * hurst - 2) * (2 * hurst - 3) / 12 / k**2
    np.testing.assert_allclose(sgn.fgn_autocovariance(hurst, k), leading + second, rtol=1e-6)


def test_autocovariance_is_positive_definite_sequence():
    # Toeplitz matrices of a valid autocovariance are positive definite for all H.
    for h in HURSTS:
        eig = np.linalg.eigvalsh(scipy.linalg.toeplitz(sgn.fgn_autocovariance(h, np.arange(200))))
        assert eig.min() > 0


# ------------------------------------------------------------------ covariance of the draws


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hurst", HURSTS)
def test_sample_autocovariance_matches_theory(method, hurst):
    n, paths = 96, 3000
    x = sgn.fgn(n, hurst, size=paths, method=method, rng=12345)
    for k in (0, 1, 2, 5, 20, 60):
        # per-path time average of x_t x_{t+k}: independent across paths, so its standard error
        # over paths is an honest Monte-Carlo error.
        per_path = (x[:, : n - k] * x[:, k:]).mean(axis=1)
        mean, se = per_path.mean(), per_path.std(ddof=1) / np.sqrt(paths)
        target = sgn.fgn_autocovariance(hurst, k)
        assert abs(mean - target) < 4.5 * se + 1e-12, (k, mean, target, se)
        # stationarity: the covariance at the start and at the end of the series
        for t in (0, n - 1 - k):
            pair = x[:, t] * x[:, t + k]
            assert abs(pair.mean() - target) < 4.5 * pair.std(ddof=1) / np.sqrt(paths)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("hurst", [0.15, 0.5, 0.85])
def test_whitened_draws_are_iid_standard_normal(method, hurst):
    """The exact law: L^{-1} x is N(0, I) for L the Cholesky factor of the true covariance."""
    n, paths = 40, 4000
    x = sgn.fgn(n, hurst, size=paths, method=method, rng=7)
    lower = np.linalg.cholesky(scipy.linalg.toeplitz(sgn.fgn_autocovariance(hurst, np.arange(n))))
    z = scipy.linalg.solve_triangular(lower, x.T, lower=True).T
    # quadratic form of each path is chi^2(n)
    q = (z**2).sum(axis=1)
    assert scipy.stats.kstest(q, scipy.stats.chi2(n).cdf).pvalue > 1e-4
    # pooled whitened values are standard normal and uncorrelated
    assert scipy.stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    cov = np.cov(z.T)
    se = 1 / np.sqrt(paths)
    assert np.abs(cov - np.eye(n)).max() < 6 * se * np.sqrt(2)


def test_methods_agree_in_distribution():
    n, paths, hurst = 64, 3000, 0.8
    draws = {m: sgn.fgn(n, hurst, size=paths, method=m, rng=99) for m in METHODS}
    # two-sample KS on a path functional sensitive to the whole covariance: the sample variance
    # of each path and the sum of the path
    for f in (lambda x: x.var(axis=1), lambda x: x.sum(axis=1)):
        ref = f(draws["cholesky"])
        for m in ("davies-harte", "hosking"):
            assert scipy.stats.ks_2samp(f(draws[m]), ref).pvalue > 1e-3


# ------------------------------------------------------------------ fbm


@pytest.mark.parametrize("hurst", [0.2, 0.5, 0.8])
def test_fbm_variance_is_t_to_2h(hurst):
    n, paths, length = 200, 4000, 3.0
    path = sgn.fbm(n, hurst, size=paths, length=length, rng=3)
    assert path.shape == (paths, n + 1)
    assert np.all(path[:, 0] == 0)
    t = np.linspace(0, length, n + 1)
    for idx in (1, 50, 137, n):
        var = path[:, idx].var()
        se = t[idx] ** (2 * hurst) * np.sqrt(2 / (paths - 1))
        assert abs(var - t[idx] ** (2 * hurst)) < 4.5 * se
    # the whole covariance at a few times
    idx = [20, 100, 200]
    cov = np.cov(path[:, idx].T)
    target = fbm_covariance(hurst, t[idx])
    assert np.abs(cov - target).max() < 4.5 * np.sqrt(2 / paths) * target.max()


def test_fbm_increments_are_scaled_fgn():
    a = sgn.fbm(1000, 0.3, length=5.0, rng=11)
    b = sgn.fgn(1000, 0.3, rng=11) * (5.0 / 1000) ** 0.3
    np.testing.assert_allclose(np.diff(a), b, rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ API behaviour


@pytest.mark.parametrize("method", METHODS)
def test_reproducible_and_shaped(method):
    a = sgn.fgn(50, 0.6, size=(2, 3), method=method, rng=5)
    b = sgn.fgn(50, 0.6, size=(2, 3), method=method, rng=np.random.default_rng(5))
    c = sgn.fgn(50, 0.6, size=(2, 3), method=method, rng=6)
    assert a.shape == (2, 3, 50)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert sgn.fgn(1, 0.6, method=method, rng=0).shape == (1,)
    assert sgn.fgn(10, 0.6, size=0, method=method, rng=0).shape == (0, 10)


def test_float32_output():
    x = sgn.fgn(1000, 0.7, size=4, rng=0, dtype=np.float32)
    assert x.dtype == np.float32
    assert sgn.fbm(100, 0.7, rng=0, dtype=np.float32).dtype == np.float32


def test_davies_harte_draws_do_not_depend_on_threads(monkeypatch):
    monkeypatch.setattr(fbm_module, "_BLOCK_BYTES", 4 * 2 * 8 * 301)  # 4 paths per block
    many = sgn.fgn(300, 0.7, size=10, rng=1)
    monkeypatch.setattr(fbm_module, "_THREADS", 1)
    one = sgn.fgn(300, 0.7, size=10, rng=1)
    np.testing.assert_array_equal(many, one)
    # and the blocks are independent draws, not copies
    assert np.abs(np.corrcoef(many)[np.triu_indices(10, 1)]).max() < 0.3


def test_fallback_when_embedding_is_indefinite(monkeypatch):
    monkeypatch.setattr(fbm_module, "_davies_harte_sqrt_eigenvalues", lambda n, h: None)
    with pytest.warns(EmbeddingWarning, match="Hosking"):
        x = sgn.fgn(64, 0.7, size=3, rng=2)
    np.testing.assert_array_equal(x, sgn.fgn(64, 0.7, size=3, method="hosking", rng=2))


def test_embedding_is_nonnegative_for_fgn():
    for h in (0.01, 0.1, 0.5, 0.9, 0.99):
        for n in (1, 2, 7, 1000, 4097):
            fbm_module._davies_harte_sqrt_eigenvalues.cache_clear()
            assert fbm_module._davies_harte_sqrt_eigenvalues(n, h) is not None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=10, hurst=0.0), "strictly between 0 and 1"),
        (dict(n=10, hurst=1.0), "strictly between 0 and 1"),
        (dict(n=10, hurst=float("nan")), "strictly between 0 and 1"),
        (dict(n=0, hurst=0.5), "positive integer"),
        (dict(n=2.5, hurst=0.5), "positive integer"),
        (dict(n=10, hurst=0.5, size=-1), "non-negative integers"),
        (dict(n=10, hurst=0.5, size="a"), "non-negative integers"),
        (dict(n=10, hurst=0.5, method="fft"), "method must be one of"),
    ],
)
def test_clear_errors(kwargs, match):
    with pytest.raises(SgnMemoryError, match=match):
        sgn.fgn(**kwargs)


def test_fbm_length_must_be_positive():
    with pytest.raises(SgnMemoryError, match="length"):
        sgn.fbm(10, 0.5, length=0)
