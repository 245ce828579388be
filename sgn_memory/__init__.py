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
from .tails import (
    GaussianityResult,
    ProjectionGaussianity,
    StableFit,
    StableTestResult,
    TailIndex,
    fit_stable,
    gaussianity,
    gaussianity_projections,
    stable_test,
    tail_index,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "TAN2021_RS_SCALES",
    "DegenerateSeriesWarning",
    "EmbeddingWarning",
    "GaussianityResult",
    "HurstEstimate",
    "InsufficientDataError",
    "ProjectionGaussianity",
    "SgnMemoryError",
    "StableFit",
    "StableTestResult",
    "SurrogateBaseline",
    "TailIndex",
    "TestResult",
    "__version__",
    "dfa_scales",
    "expected_rs",
    "fbm",
    "fgn",
    "fgn_autocovariance",
    "fit_stable",
    "gaussianity",
    "gaussianity_projections",
    "hurst_dfa",
    "hurst_rs",
    "hurst_whittle",
    "long_memory_test",
    "rs_scales",
    "shuffled_baseline",
    "stable_test",
    "tail_index",
]
