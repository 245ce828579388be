"""The Euler scheme with exact fGn increments, on refilled lanes of paths."""

from __future__ import annotations

import concurrent.futures
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._batch import array_summary as _summary
from ..errors import SgnMemoryError
from ..fbm import _check_size, fgn
from ._common import (
    _KEEPS,
    Keep,
    Scaling,
    _hurst,
    _positive,
    _positive_int,
    _scaling,
    _step_std,
    fbm_equivalent_sigma,
)
from ._domains import _inside_fn
from ._potentials import Potential

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
        The per-step scale s of the noise: sigma * dt**H ("fbm") or sigma * sqrt(dt)
        ("per-step"); with a diffusion matrix M the step's noise is s M xi, of covariance
        s^2 M M^T.
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
    sigma^2 Gamma(2H+1) / (2 k^2H) by 0.3-0.7% at k dt = 0.01 and 0.6-1.4% at k dt = 0.02 for
    H in {0.3, 0.5, 0.7} (exact lattice sums; tested).  Keep k dt well below 1 (the scheme is
    unstable for k dt >= 2).  Exits are checked at the grid times only, so a path that leaves
    and comes back between two steps is missed: first-exit times are biased upward, the
    boundary effectively shifted outward by about one step's noise, 0.58 s (Broadie, Glasserman
    & Kou 1997 at H = 1/2), s = sigma dt^H ("fbm") or sigma sqrt(dt) ("per-step").

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
                out[:, ~live] = 0.0  # idle lanes follow the drift without noise; never read
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
