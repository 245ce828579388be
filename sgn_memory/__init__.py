"""sgn_memory: stochastic gradient noise, its tails and its memory.

``import sgn_memory`` never imports torch: the collector imports it on first use.
"""

from .errors import (
    DegenerateSeriesWarning,
    EmbeddingWarning,
    InsufficientDataError,
    InvalidStoreError,
    SchemaVersionError,
    SgnMemoryError,
    UsageError,
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
from .passage import (
    EscapeApproximation,
    EscapeStudy,
    EscapeTimes,
    ExponentialCheck,
    SurvivalCurve,
    brownian_mean_exit_time,
    escape_study,
    escape_times,
    kaplan_meier,
    mean_escape_time_approx,
)
from .sde import (
    Ball,
    CustomPotential,
    DoubleWell,
    Interval,
    Potential,
    QuadraticWell,
    QuarticDoubleWell,
    SdeSimulation,
    Well,
    fbm_equivalent_sigma,
    simulate_sde,
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

_TORCH_NAMES = ("NoiseCollector", "probe_checkpoint", "select_coordinates")
_STORE_NAMES = ("NoiseStore", "CoordinateMap")
_ANALYZE_NAMES = ("analyze", "Analysis")


def __getattr__(name: str):
    """Import the collector (torch) and the store (zarr) only when first used."""
    if name in _TORCH_NAMES:
        from . import collect

        return getattr(collect, name)
    if name in _STORE_NAMES:
        from . import store

        return getattr(store, name)
    if name in _ANALYZE_NAMES:  # pandas: imported on first use
        import importlib

        module = importlib.import_module(".analyze", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'sgn_memory' has no attribute {name!r}")


__all__ = [
    "TAN2021_RS_SCALES",
    "Analysis",
    "Ball",
    "CoordinateMap",
    "CustomPotential",
    "DegenerateSeriesWarning",
    "DoubleWell",
    "EmbeddingWarning",
    "EscapeApproximation",
    "EscapeStudy",
    "EscapeTimes",
    "ExponentialCheck",
    "GaussianityResult",
    "HurstEstimate",
    "InsufficientDataError",
    "Interval",
    "InvalidStoreError",
    "NoiseCollector",
    "NoiseStore",
    "Potential",
    "ProjectionGaussianity",
    "QuadraticWell",
    "QuarticDoubleWell",
    "SchemaVersionError",
    "SdeSimulation",
    "SgnMemoryError",
    "StableFit",
    "StableTestResult",
    "SurrogateBaseline",
    "SurvivalCurve",
    "TailIndex",
    "TestResult",
    "UsageError",
    "Well",
    "__version__",
    "analyze",
    "brownian_mean_exit_time",
    "dfa_scales",
    "escape_study",
    "escape_times",
    "expected_rs",
    "fbm",
    "fbm_equivalent_sigma",
    "fgn",
    "fgn_autocovariance",
    "fit_stable",
    "gaussianity",
    "gaussianity_projections",
    "hurst_dfa",
    "hurst_rs",
    "hurst_whittle",
    "kaplan_meier",
    "long_memory_test",
    "mean_escape_time_approx",
    "probe_checkpoint",
    "rs_scales",
    "select_coordinates",
    "shuffled_baseline",
    "simulate_sde",
    "stable_test",
    "tail_index",
]
