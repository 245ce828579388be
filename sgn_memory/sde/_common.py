"""Validation helpers and the noise scalings shared by the SDE modules."""

from __future__ import annotations

import math
import numbers
from typing import Literal

from ..errors import SgnMemoryError
from ..fbm import _check_hurst

Scaling = Literal["fbm", "per-step"]
Keep = Literal["path", "final"]
Target = Literal["minimum", "saddle"]
_SCALINGS = ("fbm", "per-step")
_KEEPS = ("path", "final")
_TARGETS = ("minimum", "saddle")


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SgnMemoryError(f"{name} must be a positive finite number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise SgnMemoryError(f"{name} must be a positive finite number; got {value!r}.")
    return value


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SgnMemoryError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _hurst(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SgnMemoryError(f"hurst must lie strictly between 0 and 1; got {value!r}.")
    _check_hurst(float(value))
    return float(value)


def _scaling(value) -> str:
    if value not in _SCALINGS:
        raise SgnMemoryError(f"scaling must be one of {', '.join(_SCALINGS)}; got {value!r}.")
    return value


def fbm_equivalent_sigma(sigma: float, hurst: float, dt: float, scaling: Scaling) -> float:
    """The sigma of the continuous-time SDE dX = -grad U dt + sigma dB^H that a scheme simulates.

    ``"fbm"`` scaling simulates that SDE with the given sigma.  ``"per-step"`` scaling has
    per-step std sigma * sqrt(dt), which equals sigma_eff * dt**H for
    sigma_eff = sigma * dt**(1/2 - H): the same SDE with a dt-dependent noise level.

    Examples
    --------
    >>> from sgn_memory.sde import fbm_equivalent_sigma
    >>> round(fbm_equivalent_sigma(1.0, 0.7, 0.01, "per-step"), 4)
    2.5119
    """
    sigma = _positive("sigma", sigma)
    hurst = _hurst(hurst)
    dt = _positive("dt", dt)
    if _scaling(scaling) == "fbm":
        return sigma
    return sigma * dt ** (0.5 - hurst)


def _step_std(sigma: float, hurst: float, dt: float, scaling: str) -> float:
    return sigma * (dt**hurst if scaling == "fbm" else math.sqrt(dt))
