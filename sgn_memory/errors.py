"""Domain exceptions and warnings of sgn_memory.

Every error a user can cause by their input derives from :class:`SgnMemoryError` (itself a
``ValueError``), carries a one-sentence message naming the limit and the fix, and is mapped to an
exit code by the command line.  Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "DegenerateSeriesWarning",
    "EmbeddingWarning",
    "InsufficientDataError",
    "SgnMemoryError",
    "UsageError",
]


class SgnMemoryError(ValueError):
    """Base class of every error caused by a user's input or settings."""


class UsageError(SgnMemoryError):
    """A setting out of its range or an output path that cannot be used: the caller's call, not
    the data, is wrong (the command line exits 2 for these, 1 for the others)."""


class InsufficientDataError(SgnMemoryError):
    """The series is too short (or has too few usable scales) for the requested estimator."""


class DegenerateSeriesWarning(RuntimeWarning):
    """Some series of a batch were constant, non-finite or too short and were given NaN."""


class EmbeddingWarning(RuntimeWarning):
    """The circulant embedding was not non-negative definite; an exact slower method was used."""


class InvalidStoreError(SgnMemoryError):
    """A path that is not a NoiseStore, or a damaged one (the message says what is wrong)."""


class SchemaVersionError(InvalidStoreError):
    """A NoiseStore written with a schema version this release cannot read."""
