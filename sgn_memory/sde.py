"""SDE models of SGD driven by fractional Brownian motion, and the potentials they move in.

The model is the Euler scheme of the overdamped Langevin equation with fractional noise,

    X_{k+1} = X_k - dt * grad U(X_k) + s * M xi_k,        k = 0, 1, ..., n_steps - 1,

where xi_k is *exact* unit-variance fractional Gaussian noise (fGn, :func:`sgn_memory.fgn`),
independent across the components of xi, M an optional diffusion matrix (identity by default) and
s the per-step noise standard deviation fixed by ``scaling``:

``"fbm"``
    s = sigma * dt**H: the increments of sigma * B^H over a step of length dt, i.e. the Euler
    scheme of the continuous-time SDE dX = -grad U(X) dt + sigma dB^H.  Changing H changes both
    the correlation and the per-step size of the noise (for dt < 1 the noise shrinks as H grows).
``"per-step"``
    s = sigma * sqrt(dt) for every H: the per-step noise has the size of the Brownian (H = 1/2)
    case and only its correlation changes with H.  This is what SGD does when the noise of one
    step has a fixed size.  It is the "fbm" model with sigma_eff = sigma * dt**(1/2 - H)
    (:func:`fbm_equivalent_sigma`), so its continuous-time limit is a *different* SDE for every
    dt.

Which way H moves escape times depends on the scaling (DESIGN.md, section 4).  Measured in
``benchmarks/escape_study.py`` (basin exit, dU / D = 3 at H = 1/2, dt = 0.01): under "fbm"
scaling the noise a well feels over its relaxation time 1/U'' is ~ sigma^2 (1/U'')^(2H), so
escape from a sharp well (U'' = 4) gets *slower* as H grows (mean 9.1, 34, 84 at H = 0.2, 0.5,
0.8) and escape from a flat well (U'' = 0.25) gets faster (3750, 156, 78); under "per-step"
scaling escape gets faster with H in both, by orders of magnitude (sigma_eff grows like
dt^(1/2 - H)).

At H = 1/2 both scalings are the Euler-Maruyama scheme of dX = -U'(X) dt + sigma dW, whose
stationary density is proportional to exp(-2U/sigma^2).

How the noise is drawn, and what memory it takes
------------------------------------------------
fGn is long-range correlated, so a path cannot be drawn in independent pieces of time: a piece
drawn on its own forgets the past it should be correlated with.  :func:`simulate_sde` therefore
draws the *whole* fGn of length n_steps of a path (Davies-Harte, exact) when the path starts, and
keeps it until the path ends.  Paths are split into blocks (:func:`default_block_paths`), one unit
of parallel work each with its own random stream spawned from ``rng``; so the draws depend on
``rng``, the number of paths and ``block_paths``, never on the thread count.  A block advances
``lanes`` paths at a time (:func:`default_lanes`: at most 32 MiB of noise); when paths exit,
their lanes are refilled with the block's next paths (fresh fGn for each), so the numpy calls of
the time loop stay wide although exit times are spread out.  Peak memory is about
``_THREADS`` x (lane noise + fGn scratch), independent of the number of paths: 10^4 paths x 10^5
steps with exit detection peak at 127 MiB of traced memory (``benchmarks/escape_speed.py``),
where the noise of all paths would take 7.5 GiB.

The price of exactness is that a path's noise is drawn up to the horizon even if it exits early
(~20 ns per path-step on 2 cores, most of the run time).  An exact conditional continuation in
time (Hosking, or conditioning a fresh Davies-Harte draw by kriging) would avoid that but costs
O(n^2) or a Toeplitz solve per path; it is not implemented.

Inside a block, time runs in chunks of a few dozen steps: the chunk's noise is gathered
time-major (each lane at its own path time) into a buffer that stays in cache, each step
overwrites its noise row with the new states (so the chunk buffer *is* the trajectory), and
exits are then found for the whole chunk at once.  Paths are stopped at exit (the stopped
process: a kept path stays at its exit point).

Potentials
----------
:class:`QuadraticWell` (the fractional Ornstein-Uhlenbeck process), :class:`DoubleWell` (C^1
piecewise-parabolic: barrier heights and the curvatures of both minima and of the saddle set
independently; symmetric, asymmetric, or the equal-depth flat/sharp pair of
:meth:`DoubleWell.flat_sharp`), :class:`QuarticDoubleWell` (smooth polynomial, set by its three
critical points or by barrier and curvature) and :class:`CustomPotential` (any user callables).
Each gives ``value``, ``gradient``, ``curvature`` and, in one dimension, the landmarks a
first-passage study needs: :meth:`Potential.well` (minimum, adjacent saddles, barrier heights,
curvatures) and :meth:`Potential.escape_domain`.

References
----------
1. P. E. Kloeden and E. Platen, "Numerical Solution of Stochastic Differential Equations",
   Springer (1992), ch. 9-10 (Euler scheme).
2. P. Cheridito, H. Kawaguchi and M. Maejima, "Fractional Ornstein-Uhlenbeck processes",
   Electron. J. Probab. 8 (2003) 1-14 (stationary variance sigma^2 Gamma(2H+1) / (2 lambda^2H)).
3. H. A. Kramers, "Brownian motion in a field of force and the diffusion model of chemical
   reactions", Physica 7 (1940) 284-304.
4. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
   networks", arXiv:2105.02062.
"""

from __future__ import annotations

import concurrent.futures
import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import SgnMemoryError
from .fbm import _check_hurst, _check_size, fgn

__all__ = [
    "Ball",
    "CustomPotential",
    "DoubleWell",
    "Interval",
    "Potential",
    "QuadraticWell",
    "QuarticDoubleWell",
    "SdeSimulation",
    "Well",
    "default_block_paths",
    "default_lanes",
    "fbm_equivalent_sigma",
    "simulate_sde",
]

Scaling = Literal["fbm", "per-step"]
Keep = Literal["path", "final"]
Target = Literal["minimum", "saddle"]
_SCALINGS = ("fbm", "per-step")
_KEEPS = ("path", "final")
_TARGETS = ("minimum", "saddle")

# Noise held by the lanes of one block (bytes, float64); one block per thread runs at a time.
_BLOCK_BYTES = 32 * 2**20
# Elements of the time-major chunk buffer (kept in L2 cache) ...
_CHUNK_ELEMENTS = 1 << 15
# ... and its bounds in steps.
_CHUNK_MIN, _CHUNK_MAX = 8, 512
# Paths are simulated in blocks on this many threads.
_THREADS = min(8, os.cpu_count() or 1)
# Refuse to allocate kept paths larger than this (the message names thin= and keep="final").
_MAX_PATH_BYTES = 4 * 2**30


# ============================================================================================
# small helpers


def _summary(a) -> str:
    a = np.asarray(a, dtype=float)
    if a.size == 0:
        return "empty"
    if a.size == 1:
        return f"{a.item():.4g}"
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return f"shape={a.shape}, none finite"
    rest = f", {a.size - finite.size} non-finite" if finite.size < a.size else ""
    return (
        f"shape={a.shape}, median={np.median(finite):.4g}, "
        f"range=[{finite.min():.4g}, {finite.max():.4g}]{rest}"
    )


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


# ============================================================================================
# exit domains


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
        mid, half = 0.5 * (self.low + self.high), 0.5 * (self.high - self.low)
        return np.abs(x - mid) < half


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


# ============================================================================================
# potentials


@dataclass(frozen=True)
class Well:
    """One minimum of a 1-D potential and the barriers around it.

    Attributes
    ----------
    index : int
        Position of the minimum among ``potential.minima`` (sorted left to right).
    minimum, curvature, value : float
        Location, U'' > 0 and U at the minimum.
    saddles, saddle_curvatures, barriers : tuple of float
        The adjacent saddles (local maxima; one or two), U'' < 0 there, and the barrier heights
        U(saddle) - U(minimum).
    basin : tuple of float
        The basin of attraction (left saddle, right saddle), +-inf where there is none.
    neighbours : tuple of float
        The adjacent minima beyond the saddles, +-inf where there is none.
    """

    index: int
    minimum: float
    curvature: float
    value: float
    saddles: tuple[float, ...]
    saddle_curvatures: tuple[float, ...]
    barriers: tuple[float, ...]
    basin: tuple[float, float]
    neighbours: tuple[float, float]

    @property
    def barrier(self) -> float:
        """The lowest barrier out of the well (inf if there is none)."""
        return min(self.barriers, default=math.inf)


class Potential:
    """Base class of potentials U: value, gradient and (1-D) landmarks.

    Subclasses implement :meth:`value` and :meth:`gradient` (vectorised over leading axes; the
    state sits in the trailing ``len(state_shape)`` axes) and, for 1-D potentials, set the
    landmark arrays (:attr:`minima`, :attr:`saddles`).  :func:`simulate_sde` uses ``gradient``
    with an ``out`` buffer, so built-in potentials allocate nothing per step.
    """

    state_shape: tuple[int, ...] = ()
    _minima: np.ndarray = np.empty(0)
    _saddles: np.ndarray = np.empty(0)

    def value(self, x) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient(self, x, out=None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scaled_gradient(self, scale: float) -> Callable[[np.ndarray, np.ndarray], None]:
        """``f(x, out)`` writing ``scale * gradient(x)`` into ``out`` (float64 arrays, no checks).

        The time loop calls it once per step; subclasses fold ``scale`` into their constants
        and call array methods directly (numpy's function wrappers cost ~1 us per call).
        """
        grad = self.gradient

        def f(x: np.ndarray, out: np.ndarray) -> None:
            grad(x, out=out)
            out *= scale

        return f

    def curvature(self, x) -> np.ndarray:
        """U''(x) of a 1-D potential (central difference of the gradient unless overridden)."""
        self._require_1d("curvature")
        x = np.asarray(x, dtype=float)
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        return (self.gradient(x + h) - self.gradient(x - h)) / (2 * h)

    @property
    def minima(self) -> np.ndarray:
        """Locations of the local minima, left to right (1-D potentials)."""
        self._require_1d("minima")
        return self._minima.copy()

    @property
    def saddles(self) -> np.ndarray:
        """Locations of the local maxima between minima (the 1-D saddles), left to right."""
        self._require_1d("saddles")
        return self._saddles.copy()

    def _require_1d(self, what: str) -> None:
        if self.state_shape != ():
            raise SgnMemoryError(
                f"{what} is defined for one-dimensional potentials only; this one has states "
                f"of shape {self.state_shape}."
            )

    def well(self, index: int = 0) -> Well:
        """Landmarks of minimum ``index`` (0 = leftmost): barriers, curvatures, basin."""
        self._require_1d("well")
        m, s = self._minima, self._saddles
        if not isinstance(index, numbers.Integral) or not -m.size <= index < m.size:
            raise SgnMemoryError(
                f"well index must be an integer in [0, {m.size}); this potential has "
                f"{m.size} minima; got {index!r}."
            )
        index = int(index) % m.size
        xm = float(m[index])
        left = s[s < xm]
        right = s[s > xm]
        adjacent = [v for v in (left[-1:], right[:1]) for v in v.tolist()]
        u_min = float(self.value(xm))
        basin = (
            float(left[-1]) if left.size else -math.inf,
            float(right[0]) if right.size else math.inf,
        )
        neighbours = (
            float(m[index - 1]) if index > 0 else -math.inf,
            float(m[index + 1]) if index + 1 < m.size else math.inf,
        )
        return Well(
            index=index,
            minimum=xm,
            curvature=float(self.curvature(xm)),
            value=u_min,
            saddles=tuple(adjacent),
            saddle_curvatures=tuple(float(self.curvature(v)) for v in adjacent),
            barriers=tuple(float(self.value(v)) - u_min for v in adjacent),
            basin=basin,
            neighbours=neighbours,
        )

    def escape_domain(self, well: int = 0, *, target: Target = "minimum") -> Interval:
        """The interval whose first exit is "escape from ``well``".

        Parameters
        ----------
        well : int
            Index of the minimum the paths start in.
        target : {"minimum", "saddle"}
            ``"minimum"``: exit when a path reaches an adjacent minimum (a completed transition;
            its mean is the Kramers time).  ``"saddle"``: exit at the first touch of an
            adjacent saddle, the edge of the basin of attraction (half the Kramers time for
            high barriers, because a path on the barrier top falls back half of the time).
        """
        if target not in _TARGETS:
            raise SgnMemoryError(f"target must be one of {', '.join(_TARGETS)}; got {target!r}.")
        w = self.well(well)
        if not w.saddles:
            raise SgnMemoryError("this potential has no barrier to escape over.")
        low, high = w.neighbours if target == "minimum" else w.basin
        return Interval(low, high)

    def _landmark_repr(self) -> str:
        if self.state_shape != () or self._minima.size == 0:
            return ""
        return (
            f", minima={np.round(self._minima, 4).tolist()}, "
            f"saddles={np.round(self._saddles, 4).tolist()}"
        )


class QuadraticWell(Potential):
    """U(x) = curvature / 2 * |x - center|^2; with it the SDE is the fractional OU process.

    ``center`` scalar: 1-D states; a vector of length d: d-dimensional states (isotropic
    curvature).  The stationary variance per coordinate of dX = -k X dt + sigma dB^H is
    sigma^2 Gamma(2H + 1) / (2 k^{2H}) (Cheridito, Kawaguchi & Maejima 2003).
    """

    def __init__(self, curvature: float = 1.0, center=0.0):
        self.curvature_value = _positive("curvature", curvature)
        c = np.asarray(center, dtype=float)
        if c.ndim > 1 or not np.isfinite(c).all():
            raise SgnMemoryError("center must be a finite scalar or vector.")
        self.center = c if c.ndim else float(c)
        self.state_shape = c.shape
        if c.ndim == 0:
            self._minima = np.array([float(c)])

    def value(self, x) -> np.ndarray:
        d = np.asarray(x, dtype=float) - self.center
        sq = d * d if not self.state_shape else np.einsum("...i,...i->...", d, d)
        return 0.5 * self.curvature_value * sq

    def gradient(self, x, out=None) -> np.ndarray:
        out = np.subtract(x, self.center, out=out)
        out *= self.curvature_value
        return out

    def _scaled_gradient(self, scale: float):
        center, k = self.center, self.curvature_value * scale

        def f(x: np.ndarray, out: np.ndarray) -> None:
            np.subtract(x, center, out=out)
            out *= k

        return f

    def curvature(self, x) -> np.ndarray:
        return np.full(np.shape(x), self.curvature_value)

    def __repr__(self) -> str:
        return f"QuadraticWell(curvature={self.curvature_value:g}, center={self.center!r})"


class DoubleWell(Potential):
    """C^1 piecewise-parabolic double well: every barrier and curvature set independently.

    U is the parabola U(m) + k / 2 (x - m)^2 around each minimum m and U(s) - |k_s| / 2 (x - s)^2
    around the saddle s, joined where their slopes agree (gradient continuous, U'' jumps there).
    The positions follow from the heights and curvatures: a minimum of curvature k lies at
    distance sqrt(2 dU (k + |k_s|) / (k |k_s|)) from the saddle.  Locally-quadratic landmarks
    are what the Kramers formula assumes, so its corrections here are small (~2-4% at
    barrier / D = 4-5, against 10-15% for the quartic well; see tests).

    Parameters
    ----------
    barrier : float
        Barrier height seen from the left minimum, U(saddle) - U(left minimum).
    curvature : float
        U'' at the left minimum.
    saddle_curvature : float, optional
        |U''| at the saddle; default ``curvature``.
    barrier_right, curvature_right : float, optional
        The same for the right minimum; default: the left values (symmetric well).
    saddle : float
        Location of the saddle (U(saddle) = 0).

    Examples
    --------
    >>> from sgn_memory.sde import DoubleWell
    >>> w = DoubleWell(barrier=1.0, curvature=2.0)
    >>> w.minima.tolist(), w.saddles.tolist()
    ([-1.4142135623730951, 1.4142135623730951], [0.0])
    >>> w.well(0).barrier, w.well(0).curvature
    (1.0, 2.0)
    """

    def __init__(
        self,
        barrier: float = 1.0,
        curvature: float = 1.0,
        *,
        saddle_curvature: float | None = None,
        barrier_right: float | None = None,
        curvature_right: float | None = None,
        saddle: float = 0.0,
    ):
        b_l = _positive("barrier", barrier)
        k_l = _positive("curvature", curvature)
        k_s = _positive("saddle_curvature", k_l if saddle_curvature is None else saddle_curvature)
        b_r = _positive("barrier_right", b_l if barrier_right is None else barrier_right)
        k_r = _positive("curvature_right", k_l if curvature_right is None else curvature_right)
        if not (isinstance(saddle, numbers.Real) and math.isfinite(saddle)):
            raise SgnMemoryError(f"saddle must be a finite number; got {saddle!r}.")
        self.barrier_left, self.barrier_right = b_l, b_r
        self.curvature_left, self.curvature_right = k_l, k_r
        self.saddle_curvature = k_s
        saddle = float(saddle)
        d_l = math.sqrt(2 * b_l * (k_l + k_s) / (k_l * k_s))
        d_r = math.sqrt(2 * b_r * (k_r + k_s) / (k_r * k_s))
        # extrema, their U values and signed curvatures, left to right
        self._ext = np.array([saddle - d_l, saddle, saddle + d_r])
        self._val = np.array([-b_l, 0.0, -b_r])
        self._kap = np.array([k_l, -k_s, k_r])
        # joins: where adjacent parabolas have the same slope
        k0, k1 = self._kap[:-1], self._kap[1:]
        self._joins = (k0 * self._ext[:-1] - k1 * self._ext[1:]) / (k0 - k1)
        self._minima = self._ext[[0, 2]]
        self._saddles = self._ext[[1]]

    @classmethod
    def flat_sharp(
        cls,
        depth: float = 1.0,
        flat: float = 0.25,
        sharp: float = 4.0,
        *,
        saddle_curvature: float = 1.0,
        saddle: float = 0.0,
    ) -> DoubleWell:
        """Two minima of equal depth, a flat one (left, well 0) and a sharp one (right, well 1).

        With the same barrier on both sides, Kramers' time is longer in the flat well only
        through the prefactor 2 pi / sqrt(k |k_s|); fractional noise adds an H-dependent factor
        that differs between the two (``benchmarks/escape_study.py``).
        """
        return cls(
            barrier=depth,
            curvature=flat,
            saddle_curvature=saddle_curvature,
            curvature_right=sharp,
            saddle=saddle,
        )

    def _region(self, x):
        return self._joins.searchsorted(x)

    def _scaled_gradient(self, scale: float):
        search, take_ext = self._joins.searchsorted, self._ext.take
        take_kap = (self._kap * scale).take

        def f(x: np.ndarray, out: np.ndarray) -> None:
            i = search(x)
            take_ext(i, out=out)
            np.subtract(x, out, out=out)
            out *= take_kap(i)

        return f

    def value(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        i = self._region(x)
        d = x - self._ext[i]
        return self._val[i] + 0.5 * self._kap[i] * d * d

    def gradient(self, x, out=None) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        i = self._region(x)
        if out is None:
            out = np.empty(x.shape)
        np.take(self._ext, i, out=out)
        np.subtract(x, out, out=out)
        out *= self._kap.take(i)
        return out

    def curvature(self, x) -> np.ndarray:
        return self._kap[self._region(np.asarray(x, dtype=float))]

    def __repr__(self) -> str:
        return (
            f"DoubleWell(barrier={self.barrier_left:g}, curvature={self.curvature_left:g}, "
            f"saddle_curvature={self.saddle_curvature:g}, barrier_right={self.barrier_right:g}, "
            f"curvature_right={self.curvature_right:g}{self._landmark_repr()})"
        )


class QuarticDoubleWell(Potential):
    """Smooth quartic double well U'(x) = scale (x - left)(x - saddle)(x - right), U(saddle) = 0.

    With a = saddle - left and b = right - saddle: barriers c a^3 (a + 2b) / 12 (left) and
    c b^3 (b + 2a) / 12 (right), curvatures c a (a + b) and c b (a + b) at the minima and
    -c a b at the saddle (c = scale).  ``left != -right`` (about the saddle) gives an asymmetric
    well.  :meth:`symmetric` sets barrier and curvature: U = dU ((x/w)^2 - 1)^2 with
    w = sqrt(8 dU / k), so |U''(saddle)| = k / 2.

    Examples
    --------
    >>> from sgn_memory.sde import QuarticDoubleWell
    >>> w = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
    >>> w.minima.tolist(), w.well(0).barrier, w.well(0).saddle_curvatures
    ([-1.0, 1.0], 1.0, (-4.0,))
    """

    def __init__(
        self, left: float = -1.0, saddle: float = 0.0, right: float = 1.0, scale: float = 1.0
    ):
        vals = []
        for name, v in (("left", left), ("saddle", saddle), ("right", right)):
            if not (isinstance(v, numbers.Real) and math.isfinite(v)):
                raise SgnMemoryError(f"{name} must be a finite number; got {v!r}.")
            vals.append(float(v))
        left, saddle, right = vals
        if not left < saddle < right:
            raise SgnMemoryError(
                f"a quartic double well needs left < saddle < right; got {left}, {saddle}, {right}."
            )
        self.left, self.saddle, self.right = left, saddle, right
        self.scale = _positive("scale", scale)
        # U'(x) = c (y + a)(y)(y - b) with y = x - saddle = c (y^3 + (a - b) y^2 - a b y)
        a, b = saddle - left, right - saddle
        self._p2, self._p1 = a - b, -a * b
        self._minima = np.array([left, right])
        self._saddles = np.array([saddle])

    @classmethod
    def symmetric(cls, barrier: float = 1.0, curvature: float = 8.0) -> QuarticDoubleWell:
        """U = barrier ((x/w)^2 - 1)^2, U''(+-w) = curvature: w = sqrt(8 barrier / curvature)."""
        barrier = _positive("barrier", barrier)
        curvature = _positive("curvature", curvature)
        w = math.sqrt(8 * barrier / curvature)
        return cls(-w, 0.0, w, 4 * barrier / w**4)

    def value(self, x) -> np.ndarray:
        y = np.asarray(x, dtype=float) - self.saddle
        return self.scale * y * y * (y * y / 4 + self._p2 * y / 3 + self._p1 / 2)

    def gradient(self, x, out=None) -> np.ndarray:
        # Horner: c ((y + p2) y + p1) y
        x = np.asarray(x, dtype=float)
        y = x - self.saddle if self.saddle else x
        out = np.add(y, self._p2, out=out)
        out *= y
        out += self._p1
        out *= y
        out *= self.scale
        return out

    def _scaled_gradient(self, scale: float):
        saddle, p2, p1, c = self.saddle, self._p2, self._p1, self.scale * scale

        def f(x: np.ndarray, out: np.ndarray) -> None:
            y = x - saddle if saddle else x
            np.add(y, p2, out=out)
            out *= y
            out += p1
            out *= y
            out *= c

        return f

    def curvature(self, x) -> np.ndarray:
        y = np.asarray(x, dtype=float) - self.saddle
        return self.scale * (3 * y * y + 2 * self._p2 * y + self._p1)

    def __repr__(self) -> str:
        return (
            f"QuarticDoubleWell(left={self.left:g}, saddle={self.saddle:g}, "
            f"right={self.right:g}, scale={self.scale:g}, "
            f"barriers=({self.well(0).barrier:.4g}, {self.well(1).barrier:.4g}))"
        )


class CustomPotential(Potential):
    """Any potential given by callables.

    Parameters
    ----------
    gradient : callable
        ``gradient(x) -> array`` of the same shape as ``x`` (leading axes are paths).
    value : callable, optional
        ``value(x)``; needed for barrier heights unless the landmarks are 1-D, where the
        gradient is integrated between them (``scipy.integrate.quad``).
    minima, saddles : sequence of float, optional
        Landmarks of a 1-D potential (alternating, minima outermost), used by :meth:`well`,
        :meth:`escape_domain` and :func:`sgn_memory.passage.mean_escape_time_approx`.
        Curvatures are central differences of ``gradient``.
    state_shape : tuple
        ``()`` for scalar states, ``(d,)`` for d-dimensional ones.
    """

    def __init__(
        self,
        gradient: Callable,
        value: Callable | None = None,
        *,
        minima=(),
        saddles=(),
        state_shape: tuple[int, ...] = (),
    ):
        if not callable(gradient) or (value is not None and not callable(value)):
            raise SgnMemoryError("gradient (and value, if given) must be callables.")
        self._grad, self._value = gradient, value
        self.state_shape = tuple(state_shape)
        m = np.sort(np.asarray(minima, dtype=float).ravel())
        s = np.sort(np.asarray(saddles, dtype=float).ravel())
        if (m.size or s.size) and self.state_shape != ():
            raise SgnMemoryError("minima and saddles can be given for 1-D potentials only.")
        if s.size and (m.size != s.size + 1 or not np.all((m[:-1] < s) & (s < m[1:]))):
            raise SgnMemoryError(
                "minima and saddles must alternate, minima outermost "
                f"(got minima {m.tolist()}, saddles {s.tolist()})."
            )
        self._minima, self._saddles = m, s
        if (k := self.curvature(m)).size and not np.all(k > 0):
            raise SgnMemoryError(f"U'' must be positive at every minimum; got {k.tolist()}.")
        if (k := self.curvature(s)).size and not np.all(k < 0):
            raise SgnMemoryError(f"U'' must be negative at every saddle; got {k.tolist()}.")

    def value(self, x) -> np.ndarray:
        import scipy.integrate

        if self._value is not None:
            return np.asarray(self._value(np.asarray(x, dtype=float)), dtype=float)
        if self.state_shape != () or self._minima.size == 0:
            raise SgnMemoryError("this CustomPotential was given no value callable.")
        # U(x) - U(first minimum), from the gradient
        ref = float(self._minima[0])
        x = np.asarray(x, dtype=float)
        flat = [
            scipy.integrate.quad(lambda y: float(self._grad(np.asarray(y))), ref, v)[0]
            for v in x.ravel()
        ]
        return np.asarray(flat).reshape(x.shape)

    def gradient(self, x, out=None) -> np.ndarray:
        g = np.asarray(self._grad(np.asarray(x, dtype=float)), dtype=float)
        if out is None:
            return g
        np.copyto(out, g)
        return out

    def __repr__(self) -> str:
        name = getattr(self._grad, "__name__", type(self._grad).__name__)
        return f"CustomPotential(gradient={name}, state_shape={self.state_shape}" + (
            self._landmark_repr() + ")"
        )


# ============================================================================================
# simulation


@dataclass(frozen=True, repr=False)
class SdeSimulation:
    """Paths (or what was kept of them) of the Euler scheme of an fBM-driven SDE.

    Attributes
    ----------
    paths : numpy.ndarray or None
        ``(*size, n_saved, *state)``: X at ``times`` (every ``thin``-th step from 0), or None
        when ``keep="final"``.  With a domain, paths are *stopped* at exit: entries after the
        exit step hold the exit position.
    times : numpy.ndarray or None
        ``(n_saved,)`` times of the saved points, ``k * thin * dt``.
    final : numpy.ndarray
        ``(*size, *state)``: X at the horizon, or at the exit step for paths that exited.
    exit_step : numpy.ndarray or None
        ``(*size,)`` int64: the first step k >= 1 with X_k outside the domain; -1 for paths still
        inside at the horizon (censored).  None without a domain.
    exit_position : numpy.ndarray or None
        ``(*size, *state)``: X at the exit step, NaN for censored paths.
    hurst, sigma, dt : float
    n_steps : int
    scaling : {"fbm", "per-step"}
        Which noise scaling was used (see the module docstring).
    noise_std : float
        Per-step standard deviation of each noise component: sigma * dt**H ("fbm") or
        sigma * sqrt(dt) ("per-step"), times the diffusion matrix if one was given.
    sigma_fbm : float
        sigma of the continuous-time SDE this scheme discretises (:func:`fbm_equivalent_sigma`).
    x0 : numpy.ndarray
    domain : Interval, Ball, callable or None
    settings : Mapping
        thin, keep, block_paths, lanes, threads, chunk size, diffusion, noise source.
    """

    paths: np.ndarray | None
    times: np.ndarray | None
    final: np.ndarray
    exit_step: np.ndarray | None
    exit_position: np.ndarray | None
    hurst: float
    sigma: float
    dt: float
    n_steps: int
    scaling: str
    noise_std: float
    sigma_fbm: float
    x0: np.ndarray
    domain: Any = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def horizon(self) -> float:
        """n_steps * dt: the time at which paths still inside are censored."""
        return self.n_steps * self.dt

    @property
    def n_paths(self) -> int:
        return int(np.prod(self.final.shape[: self.final.ndim - self.x0.ndim], dtype=np.int64))

    @property
    def exited(self) -> np.ndarray | None:
        """Bool per path: left the domain before the horizon (None without a domain)."""
        return None if self.exit_step is None else self.exit_step > 0

    @property
    def exit_time(self) -> np.ndarray | None:
        """exit_step * dt per path, inf for censored paths (None without a domain)."""
        if self.exit_step is None:
            return None
        return np.where(self.exit_step > 0, self.exit_step * self.dt, np.inf)

    def __repr__(self) -> str:
        kept = "none" if self.paths is None else f"shape={self.paths.shape}"
        exits = ""
        if self.exit_step is not None:
            n_exit = int((self.exit_step > 0).sum())
            exits = f", exited {n_exit}/{self.exit_step.size}"
        return (
            f"SdeSimulation(scaling={self.scaling!r}, hurst={self.hurst:g}, sigma={self.sigma:g}, "
            f"dt={self.dt:g}, n_steps={self.n_steps}, noise_std={self.noise_std:.4g}, "
            f"paths[{kept}], final[{_summary(self.final)}]{exits})"
        )


def default_lanes(n_steps: int, n_noise: int = 1) -> int:
    """Paths advanced together in one block: <= ``_BLOCK_BYTES`` (32 MiB) of noise, >= 16.

    Each lane holds the float64 fGn of its current path for the whole horizon
    (n_steps x n_noise values).  More lanes amortise numpy's per-call overhead in the time loop;
    fewer lanes use less memory.
    """
    return max(16, _BLOCK_BYTES // (8 * n_steps * n_noise))


def default_block_paths(n_paths: int, lanes: int) -> int:
    """Paths per block (one unit of parallel work with its own random stream).

    A quarter of the paths, but at least ``lanes`` and at most 8 x ``lanes``: a block's lanes
    take a new path whenever one exits, and only its last paths run with idle lanes.
    """
    return int(min(8 * lanes, max(lanes, -(-n_paths // 4))))


def _chunk_steps(lanes: int, n_state: int) -> int:
    return int(np.clip(_CHUNK_ELEMENTS // max(1, lanes * n_state), _CHUNK_MIN, _CHUNK_MAX))


def simulate_sde(
    grad,
    x0,
    *,
    hurst: float,
    sigma: float,
    dt: float,
    n_steps: int,
    size=None,
    scaling: Scaling = "fbm",
    rng=None,
    diffusion=None,
    domain=None,
    keep: Keep = "path",
    thin: int = 1,
    noise=None,
    block_paths: int | None = None,
    lanes: int | None = None,
) -> SdeSimulation:
    """Simulate X_{k+1} = X_k - dt grad U(X_k) + s M xi_k with exact fGn xi, many paths at once.

    Parameters
    ----------
    grad : Potential or callable
        The drift is ``-grad``: a :class:`Potential` (its ``gradient`` is used, without
        allocating per step) or any callable ``grad(x)`` taking an array of shape
        ``(n, *state)`` (n paths) and returning one of the same shape.  It is called from
        worker threads, so it must not mutate shared state.
    x0 : float or array_like of shape (d,)
        Starting point of every path; its shape is the state shape (scalar: 1-D model).
    hurst : float
        Hurst exponent H in (0, 1) of the driving noise.
    sigma : float
        Noise level (> 0).
    dt : float
        Step (> 0).
    n_steps : int
        Number of steps; the horizon is ``n_steps * dt``.
    size : int or tuple of int, optional
        Number (shape) of independent paths; ``None``: one path.
    scaling : {"fbm", "per-step"}
        Per-step noise std ``sigma * dt**hurst`` ("fbm": continuous-time fBM) or
        ``sigma * sqrt(dt)`` for every H ("per-step": only the correlation changes with H).
        See the module docstring; the result records which.
    rng : None, int, SeedSequence or Generator
        Source of randomness; each block of paths gets a stream spawned from it.
    diffusion : array_like of shape (d, m), optional
        Diffusion matrix M: the noise of a step is ``s * M @ xi`` with m independent fGn
        components.  Default: identity (independent fGn per coordinate).  d-dimensional states
        only.
    domain : Interval, Ball or callable, optional
        Record the first exit of each path from this open set (a callable gets states
        ``(..., *state)`` and returns True inside).  Paths are stopped at exit and dropped from
        the computation.  ``x0`` must lie inside.
    keep : {"path", "final"}
        ``"path"``: keep the trajectory at every ``thin``-th step; ``"final"``: keep only the
        final state (and exit information): memory O(number of paths).
    thin : int
        Keep every ``thin``-th step (``keep="path"``).
    noise : array_like, optional
        Use these unit-variance increments instead of drawing fGn (shape ``(*size, n_steps)``,
        or ``(*size, n_steps, m)`` for d-dimensional states): e.g. a recorded, standardised
        gradient-noise series or common random numbers.  They are scaled like the fGn would be.
    block_paths : int, optional
        Paths per block, the unit of parallel work with its own random stream (default
        :func:`default_block_paths`); the draws depend on it (and on ``rng``), not on threads.
    lanes : int, optional
        Paths a block advances at once (default :func:`default_lanes`, <= 32 MiB of noise);
        each lane holds n_steps x m float64 noise values.  More lanes: faster, more memory.
        The draws depend on it too.

    Returns
    -------
    SdeSimulation

    Notes
    -----
    Cost: ~20 ns per path-step for the exact fGn (Davies-Harte, O(n log n) per path) plus a
    few ns per path-step for the Euler steps of a built-in potential on 2 cores;
    ``benchmarks/escape_speed.py`` times 10^4 paths x 10^4 steps of a double well with escape
    detection.  Memory: see the module docstring.

    Accuracy: the scheme is the explicit Euler scheme with exact noise increments.  Escape
    depends on the stationary law in the well, which the scheme gets right up to 1 + O(k dt):
    for dX = -k X dt + sigma dB^H the stationary variance of the scheme exceeds
    sigma^2 Gamma(2H+1) / (2 k^2H) by 0.3-0.5% at k dt = 0.01 and 0.6-1.4% at k dt = 0.02 for
    H in {0.3, 0.5, 0.7} (exact lattice sums; tested).  Keep k dt well below 1 (the scheme is
    unstable for k dt >= 2).  Exits are checked at the grid times only, so a path that leaves
    and comes back between two steps is missed (first-exit times are biased upward by
    O(sqrt(dt)) for a boundary the path reaches diffusively).

    Examples
    --------
    >>> import sgn_memory as sgn
    >>> from sgn_memory.sde import QuarticDoubleWell
    >>> well = QuarticDoubleWell.symmetric(barrier=1.0, curvature=8.0)
    >>> sim = sgn.simulate_sde(well, -1.0, hurst=0.7, sigma=0.8, dt=0.01, n_steps=2000,
    ...                        size=500, domain=well.escape_domain(0), keep="final", rng=1)
    >>> sim.exit_step.shape, sim.scaling
    ((500,), 'fbm')
    """
    hurst = _hurst(hurst)
    sigma = _positive("sigma", sigma)
    dt = _positive("dt", dt)
    n_steps = _positive_int("n_steps", n_steps)
    scaling = _scaling(scaling)
    if keep not in _KEEPS:
        raise SgnMemoryError(f"keep must be one of {', '.join(_KEEPS)}; got {keep!r}.")
    thin = _positive_int("thin", thin)
    lead = _check_size(size)
    n_paths = math.prod(lead)

    x0 = np.array(x0, dtype=float)
    if x0.ndim > 1:
        raise SgnMemoryError(
            f"x0 must be a scalar (1-D model) or a vector of length d; got shape {x0.shape}."
        )
    if not np.isfinite(x0).all():
        raise SgnMemoryError(f"x0 must be finite; got {x0.tolist()}.")
    state = x0.shape
    d = 1 if not state else state[0]
    if d < 1:
        raise SgnMemoryError("x0 must have at least one coordinate.")

    if isinstance(grad, Potential):
        if grad.state_shape != state:
            raise SgnMemoryError(
                f"the potential has states of shape {grad.state_shape} but x0 has shape {state}."
            )
        drift = grad._scaled_gradient(dt)  # dt * grad U, into a buffer
    elif callable(grad):
        drift = _user_drift(grad, dt)
    else:
        raise SgnMemoryError(
            f"grad must be a Potential or a callable grad(x); got {type(grad).__name__}."
        )

    mat = None
    m = d
    if diffusion is not None:
        mat = np.array(diffusion, dtype=float)
        if not state or mat.ndim != 2 or mat.shape[0] != d:
            raise SgnMemoryError(
                f"diffusion must be a (d, m) matrix with d = len(x0) = {d if state else 'n/a'}"
                f" for a d-dimensional x0; got shape {mat.shape} with x0 of shape {state}."
            )
        if not np.isfinite(mat).all():
            raise SgnMemoryError("diffusion must be finite.")
        m = mat.shape[1]

    inside = _inside_fn(domain)
    if inside is not None and not bool(inside(x0[None], len(state))[0]):
        raise SgnMemoryError(f"x0 = {x0.tolist()} lies outside the domain {domain!r}.")

    noise_view = None
    if noise is not None:
        noise_arr = np.asarray(noise, dtype=float)
        want = (*lead, n_steps) + ((m,) if state else ())
        if noise_arr.shape != want:
            raise SgnMemoryError(
                f"noise must have shape {want} (*size, n_steps{', m' if state else ''}); "
                f"got {noise_arr.shape}."
            )
        if not np.isfinite(noise_arr).all():
            raise SgnMemoryError("noise must be finite.")
        noise_view = np.ascontiguousarray(noise_arr).reshape(-1)  # (paths, n_steps, m), flat

    n_saved = n_steps // thin + 1
    paths = None
    if keep == "path":
        nbytes = n_paths * n_saved * d * 8
        if nbytes > _MAX_PATH_BYTES:
            raise SgnMemoryError(
                f"keeping {n_paths} paths x {n_saved} points would take {nbytes / 2**30:.1f} GiB; "
                'pass thin=<k> to keep every k-th step or keep="final" for exit information only.'
            )
        paths = np.empty((n_paths, n_saved, *state))
        paths[:, 0] = x0
    final = np.empty((n_paths, *state))
    exit_step = np.full(n_paths, -1, dtype=np.int64) if inside else None
    exit_pos = np.full((n_paths, *state), np.nan) if inside else None

    lanes = default_lanes(n_steps, m) if lanes is None else _positive_int("lanes", lanes)
    if block_paths is None:
        block = default_block_paths(n_paths, lanes)
    else:
        block = _positive_int("block_paths", block_paths)
    block = max(1, min(block, n_paths)) if n_paths else 1
    lanes = min(lanes, block)
    starts = list(range(0, n_paths, block))
    if noise is None:
        streams = np.random.default_rng(rng).spawn(len(starts))
    else:
        streams = [None] * len(starts)
    s = _step_std(sigma, hurst, dt, scaling)
    mixing = None if mat is None else (s * mat).T  # (m, d): a step's noise is xi @ (s M)^T
    chunk = _chunk_steps(lanes, d)
    ctx = _Run(
        drift=drift,
        x0=x0,
        hurst=hurst,
        dt=dt,
        n_steps=n_steps,
        m=m,
        step_std=s,
        mixing=mixing,
        inside=inside,
        thin=thin,
        chunk=chunk,
        lanes=lanes,
        paths=paths,
        final=final,
        exit_step=exit_step,
        exit_pos=exit_pos,
        noise=noise_view,
    )

    def run(start: int, gen) -> None:
        _simulate_block(ctx, start, min(start + block, n_paths), gen)

    if len(starts) <= 1 or _THREADS == 1:
        for start, gen in zip(starts, streams, strict=True):
            run(start, gen)
    else:
        with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
            for fut in [pool.submit(run, a, g) for a, g in zip(starts, streams, strict=True)]:
                fut.result()

    return SdeSimulation(
        paths=None if paths is None else paths.reshape(*lead, n_saved, *state),
        times=None if paths is None else np.arange(n_saved) * (thin * dt),
        final=final.reshape(lead + state),
        exit_step=None if exit_step is None else exit_step.reshape(lead),
        exit_position=None if exit_pos is None else exit_pos.reshape(lead + state),
        hurst=hurst,
        sigma=sigma,
        dt=dt,
        n_steps=n_steps,
        scaling=scaling,
        noise_std=s,
        sigma_fbm=fbm_equivalent_sigma(sigma, hurst, dt, scaling),
        x0=x0,
        domain=domain,
        settings={
            "keep": keep,
            "thin": thin,
            "block_paths": block,
            "lanes": lanes,
            "threads": _THREADS,
            "chunk_steps": chunk,
            "diffusion": mat,
            "noise": "user" if noise is not None else "fgn davies-harte (exact)",
            "grad": repr(grad) if isinstance(grad, Potential) else getattr(grad, "__name__", "?"),
        },
    )


@dataclass
class _Run:
    """Everything a block worker needs; output arrays are written in disjoint row ranges."""

    drift: Callable[[np.ndarray, np.ndarray], None]  # (x, out): out = dt * grad U(x)
    x0: np.ndarray
    hurst: float
    dt: float
    n_steps: int
    m: int
    step_std: float
    mixing: np.ndarray | None
    inside: Callable | None
    thin: int
    chunk: int
    lanes: int
    paths: np.ndarray | None
    final: np.ndarray
    exit_step: np.ndarray | None
    exit_pos: np.ndarray | None
    noise: np.ndarray | None  # user noise, (paths, n_steps, m) flattened


def _simulate_block(ctx: _Run, lo: int, hi: int, gen) -> None:
    """Advance paths lo:hi through all steps on ``ctx.lanes`` lanes.

    Each lane runs one path at a time, with the path's whole fGn in ``store``; a lane whose path
    exits (or reaches the horizon) is refilled with the next path of the block, with fresh fGn
    drawn from ``gen``, once at least 1/8 of the lanes are free.  Time runs in chunks: the
    chunk's noise is gathered time-major into ``buf`` (each lane at its own path time), every
    step overwrites its noise row with the new states, and exits are found per chunk.
    """
    n, dt, x0 = ctx.n_steps, ctx.dt, ctx.x0
    state, sd = x0.shape, x0.ndim
    n_lanes = min(ctx.lanes, hi - lo)
    if n_lanes <= 0:
        return
    store = None  # (lanes, m, n): the noise of each lane's path (None with user noise)
    lane_path = np.full(n_lanes, -1, dtype=np.int64)  # row of the path in the outputs, or -1
    lane_t = np.zeros(n_lanes, dtype=np.int64)  # steps done by the lane's path
    x = np.empty((n_lanes, *state))
    x[...] = x0
    rows_all = np.arange(n_lanes)
    pending = lo  # next path of the block to start
    refill_min = max(1, n_lanes // 8)

    def start(free: np.ndarray) -> None:
        nonlocal pending, store
        r = min(free.size, hi - pending)
        if r <= 0:
            return
        free = free[:r]
        if ctx.noise is None:
            if store is None:  # the first draw fills every lane: it becomes the store
                store = fgn(n, ctx.hurst, size=(n_lanes, ctx.m), rng=gen)
            else:  # in batches of <= 1/4 of the lanes, so the draw's output stays small
                step = max(1, n_lanes // 4)
                for i in range(0, r, step):
                    part = free[i : i + step]
                    store[part] = fgn(n, ctx.hurst, size=(part.size, ctx.m), rng=gen)
        lane_path[free] = np.arange(pending, pending + r)
        lane_t[free] = 0
        x[free] = x0
        pending += r

    start(rows_all)
    T = ctx.chunk
    buf = np.empty((T, n_lanes, *state))  # time-major chunk: noise in, states out
    gbuf = np.empty((n_lanes, *state))
    offsets = np.arange(T)
    thin = ctx.thin
    drift = ctx.drift
    with np.errstate(over="ignore", invalid="ignore"):
        while True:
            live = lane_path >= 0
            if not live.any():
                break
            remaining = np.where(live, n - lane_t, 0)
            tk = int(min(T, remaining.max()))
            t0 = int(lane_t[0])
            out = buf[:tk]
            if store is not None and live.all() and (lane_t == t0).all():
                src = store[:, :, t0 : t0 + tk].transpose(2, 0, 1)  # in step: a slice
            else:
                # gather each lane's noise at its own path time, straight into time-major order
                t_idx = np.minimum(lane_t[None, :] + offsets[:tk, None], n - 1)  # (tk, lanes)
                if store is not None:  # (lanes, m, n)
                    flat, base, st_t, st_c = store.reshape(-1), rows_all * (ctx.m * n), 1, n
                else:  # the user's (paths, n, m)
                    base = np.maximum(lane_path, 0) * (n * ctx.m)
                    flat, st_t, st_c = ctx.noise, ctx.m, 1
                idx = (base[None, :] + t_idx * st_t)[..., None] + np.arange(ctx.m) * st_c
                src = np.take(flat, idx)  # (tk, lanes, m)
            if not state:
                np.multiply(src[..., 0], ctx.step_std, out=out)
            elif ctx.mixing is None:
                np.multiply(src, ctx.step_std, out=out)
            else:
                np.matmul(src, ctx.mixing, out=out)
            if not live.all():
                out[:, ~live] = 0.0  # idle lanes rest at x0
            for j in range(tk):
                drift(x, gbuf)
                row = out[j]
                row -= gbuf
                row += x
                x = row
            # rows j < remaining are real steps lane_t + j + 1 of the lane's path
            valid = offsets[:tk, None] < remaining[None, :]  # (tk, lanes)
            hit = np.zeros(n_lanes, dtype=bool)
            first = np.zeros(n_lanes, dtype=np.int64)
            if ctx.inside is not None:
                outside = ~ctx.inside(out, sd) & valid
                hit = outside.any(axis=0) & live
                first = outside.argmax(axis=0)
            reach = live & ~hit & (remaining <= tk)  # censored at the horizon in this chunk
            if ctx.paths is not None:
                _keep_rows(ctx, out, lane_path, lane_t, live, valid, hit, first, thin)
            if hit.any():
                lanes_hit = np.flatnonzero(hit)
                rows_ = lane_path[lanes_hit]
                pos = out[first[lanes_hit], lanes_hit]
                if not np.isfinite(pos).all():
                    _diverged(int((lane_t[lanes_hit] + first[lanes_hit]).max()) + 1, dt)
                steps = lane_t[lanes_hit] + first[lanes_hit] + 1
                ctx.exit_step[rows_] = steps
                ctx.exit_pos[rows_] = pos
                ctx.final[rows_] = pos
                if ctx.paths is not None:
                    _freeze(ctx.paths, rows_, steps, pos, thin, sd)
            if reach.any():
                lanes_end = np.flatnonzero(reach)
                last = out[remaining[lanes_end] - 1, lanes_end]
                if not np.isfinite(last).all():
                    _diverged(n, dt)
                ctx.final[lane_path[lanes_end]] = last
            lane_t += tk
            x = out[tk - 1].copy()
            going = live & ~hit & ~reach
            if not np.isfinite(x[going]).all():
                _diverged(int(lane_t[going].max()), dt)
            done = hit | reach
            if done.any():
                lane_path[done] = -1
                x[done] = x0
            free = np.flatnonzero(lane_path < 0)
            if pending < hi and (free.size >= refill_min or free.size == n_lanes):
                start(free)


def _keep_rows(ctx, out, lane_path, lane_t, live, valid, hit, first, thin) -> None:
    """Write the chunk's states at multiples of ``thin`` into the kept paths (before exits)."""
    tk = out.shape[0]
    steps = lane_t[None, :] + 1 + np.arange(tk)[:, None]  # (tk, lanes)
    mask = valid & live[None, :] & (steps % thin == 0)
    if hit.any():
        mask &= ~(hit[None, :] & (np.arange(tk)[:, None] > first[None, :]))
    jj, ll = np.nonzero(mask)
    if jj.size:
        ctx.paths[lane_path[ll], steps[jj, ll] // thin] = out[jj, ll]


def _freeze(paths: np.ndarray, rows: np.ndarray, steps: np.ndarray, pos, thin: int, sd: int):
    """Stopped process: every kept point after the exit step holds the exit position."""
    saved_steps = np.arange(paths.shape[1]) * thin
    after = saved_steps[None, :] > steps[:, None]  # (rows, n_saved)
    block = paths[rows]
    np.copyto(block, pos[:, None], where=after.reshape(after.shape + (1,) * sd))
    paths[rows] = block


def _user_drift(grad: Callable, dt: float) -> Callable[[np.ndarray, np.ndarray], None]:
    """``f(x, out)``: out = dt * grad(x) for a user callable, its output shape checked."""

    def f(x: np.ndarray, out: np.ndarray) -> None:
        g = np.asarray(grad(x), dtype=float)
        if g.shape != x.shape:
            raise SgnMemoryError(
                f"grad(x) must return an array of the shape of x, {x.shape} (paths, *state); "
                f"got {g.shape}."
            )
        np.multiply(g, dt, out=out)

    return f


def _diverged(step: int, dt: float) -> None:
    raise SgnMemoryError(
        f"the Euler scheme left the finite numbers by step {step}: dt = {dt:g} is too large "
        "for this drift (keep |U''| dt well below 2) or the potential does not confine the paths."
    )
