"""sgn_memory: stochastic gradient noise, its tails and its memory.

``import sgn_memory`` never imports torch: the collector imports it on first use.
"""

from .errors import (
    DegenerateSeriesWarning,
    EmbeddingWarning,
    InsufficientDataError,
    SgnMemoryError,
)
from .fbm import fbm, fgn, fgn_autocovariance
from .hurst import (
    TAN2021_RS_SCALES,
    HurstEstimate,
    SurrogateBaseline,
    TestResult,
    dfa_scales,
    expected_rs,
    hurst_dfa,
    hurst_rs,
    hurst_whittle,
    long_memory_test,
    rs_scales,
    shuffled_baseline,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "TAN2021_RS_SCALES",
    "DegenerateSeriesWarning",
    "EmbeddingWarning",
    "HurstEstimate",
    "InsufficientDataError",
    "SgnMemoryError",
    "SurrogateBaseline",
    "TestResult",
    "__version__",
    "dfa_scales",
    "expected_rs",
    "fbm",
    "fgn",
    "fgn_autocovariance",
    "hurst_dfa",
    "hurst_rs",
    "hurst_whittle",
    "long_memory_test",
    "rs_scales",
    "shuffled_baseline",
]
