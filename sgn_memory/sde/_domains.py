"""Exit domains: intervals, balls, or any callable."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SgnMemoryError
from ._common import _positive


@dataclass(frozen=True)
class Interval:
    """The open interval (low, high) of one coordinate; a path exits when X <= low or X >= high.

    One bound may be infinite: ``Interval(high=b)`` is "first crossing of the level b from
    below".  For d-dimensional states name the ``coordinate`` it applies to.
    """

    low: float = -math.inf
    high: float = math.inf
    coordinate: int | None = None

    def __post_init__(self):
        low, high = float(self.low), float(self.high)
        if math.isnan(low) or math.isnan(high) or not low < high:
            raise SgnMemoryError(
                f"an Interval needs low < high (infinite bounds allowed); got ({low}, {high})."
            )
        if math.isinf(low) and math.isinf(high):
            raise SgnMemoryError("an Interval needs at least one finite bound to exit through.")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def inside(self, x: np.ndarray, state_ndim: int) -> np.ndarray:
        """Boolean array of ``x.shape[:x.ndim - state_ndim]``; NaN counts as outside."""
        if state_ndim:
            if self.coordinate is None:
                raise SgnMemoryError(
                    "an Interval on a d-dimensional state needs coordinate=<index>."
                )
            x = x[..., self.coordinate]
        elif self.coordinate not in (None, 0):
            raise SgnMemoryError(
                f"coordinate={self.coordinate} was given but the state is one-dimensional."
            )
        if math.isinf(self.low):
            return x < self.high
        if math.isinf(self.high):
            return x > self.low
        # two comparisons, not |x - mid| < half: that form rounds and lets x == low count as inside
        return (x > self.low) & (x < self.high)


@dataclass(frozen=True)
class Ball:
    """The open ball |X - center| < radius (Euclidean) of a d-dimensional state."""

    center: Any
    radius: float

    def __post_init__(self):
        center = np.atleast_1d(np.asarray(self.center, dtype=float))
        if center.ndim != 1 or not np.isfinite(center).all():
            raise SgnMemoryError("a Ball needs a finite 1-D center vector.")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", _positive("radius", self.radius))

    def inside(self, x: np.ndarray, state_ndim: int) -> np.ndarray:
        if state_ndim != 1 or x.shape[-1] != self.center.size:
            raise SgnMemoryError(
                f"a Ball of dimension {self.center.size} needs states of shape "
                f"({self.center.size},); got {x.shape[x.ndim - state_ndim :]}."
            )
        d = x - self.center
        return np.einsum("...i,...i->...", d, d) < self.radius**2


def _inside_fn(domain) -> Callable[[np.ndarray, int], np.ndarray] | None:
    """Domain object or user callable ``inside(x) -> bool array`` -> ``f(x, state_ndim)``."""
    if domain is None:
        return None
    if isinstance(domain, Interval | Ball):
        return domain.inside
    if callable(domain):

        def inside(x: np.ndarray, state_ndim: int) -> np.ndarray:
            out = np.asarray(domain(x), dtype=bool)
            want = x.shape[: x.ndim - state_ndim]
            if out.shape != want:
                raise SgnMemoryError(
                    f"a domain callable must return one bool per state, shape {want}; "
                    f"got {out.shape}."
                )
            return out

        return inside
    raise SgnMemoryError(
        "domain must be an Interval, a Ball or a callable inside(x) -> bool array; "
        f"got {type(domain).__name__}."
    )
