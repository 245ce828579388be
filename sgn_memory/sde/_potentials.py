"""Potentials U with their gradients, curvatures and first-passage landmarks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import SgnMemoryError
from ._common import _TARGETS, Target, _positive
from ._domains import Interval


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
