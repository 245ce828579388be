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

Which way H moves escape times depends on the scaling.  Measured in
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

from ._common import Keep, Scaling, Target, fbm_equivalent_sigma
from ._domains import Ball, Interval
from ._potentials import (
    CustomPotential,
    DoubleWell,
    Potential,
    QuadraticWell,
    QuarticDoubleWell,
    Well,
)
from ._simulate import SdeSimulation, default_block_paths, default_lanes, simulate_sde

__all__ = [
    "Ball",
    "CustomPotential",
    "DoubleWell",
    "Interval",
    "Keep",
    "Potential",
    "QuadraticWell",
    "QuarticDoubleWell",
    "Scaling",
    "SdeSimulation",
    "Target",
    "Well",
    "default_block_paths",
    "default_lanes",
    "fbm_equivalent_sigma",
    "simulate_sde",
]
