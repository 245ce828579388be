"""Is the noise Gaussian?  Is it alpha-stable?  Distribution tests for many series at once.

Public names live here; the work is split by topic: :mod:`._gaussian` (normality battery),
:mod:`._stable` (stable laws: sampling, fitting, goodness of fit), :mod:`._tail` (tail index and
plot data).  Numerics only: numpy and scipy.
"""

from ._gaussian import (
    GAUSSIANITY_TESTS,
    GaussianityResult,
    ProjectionGaussianity,
    benjamini_hochberg,
    gaussianity,
    gaussianity_projections,
)
from ._stable import (
    StableFit,
    StableTestResult,
    fit_stable,
    s0_to_s1_loc,
    stable_rvs,
    stable_test,
)
from ._tail import TailDiagnostics, TailIndex, hill_k, mohammadi_block, tail_diagnostics, tail_index

__all__ = [
    "GAUSSIANITY_TESTS",
    "GaussianityResult",
    "ProjectionGaussianity",
    "StableFit",
    "StableTestResult",
    "TailDiagnostics",
    "TailIndex",
    "benjamini_hochberg",
    "fit_stable",
    "gaussianity",
    "gaussianity_projections",
    "hill_k",
    "mohammadi_block",
    "s0_to_s1_loc",
    "stable_rvs",
    "stable_test",
    "tail_diagnostics",
    "tail_index",
]
