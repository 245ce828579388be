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

from ._common import HurstEstimate, SurrogateBaseline, TestResult, dfa_scales, rs_scales
from ._dfa import hurst_dfa
from ._memory_tests import long_memory_test, shuffled_baseline
from ._rs import TAN2021_RS_SCALES, expected_rs, hurst_rs, tan2021_mean_hurst
from ._whittle import hurst_whittle

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
    "tan2021_mean_hurst",
]
