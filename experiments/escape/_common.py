"""Building blocks every part uses: seeds, full-data loss, minibatch streams, loss paths and
their escape statistics."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

import sgn_memory as sgn
from sgn_memory.errors import SgnMemoryError
from sgn_memory.sde import Interval

from ..data import DataSpec
from ..optim import training_step
from ..runner import Shuffled, evaluate


def _seed(*keys: int) -> int:
    """A 32-bit seed derived from integer keys (independent streams for different keys)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


# ============================================================================ building blocks
def _full_data(data: DataSpec) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The training split as one batch: a full-batch gradient step and the reference use it."""
    return [(data.x_train, data.y_train)]


def _train_loss(model: nn.Module, data: DataSpec, loss_fn) -> float:
    return evaluate(model, data, loss_fn, split="train")["train_loss"]


def _batches(data: DataSpec, batch_size: int, seed: int) -> Iterator:
    """Endless minibatches of exactly ``batch_size`` (epochs reshuffled by one generator)."""
    return itertools.chain.from_iterable(itertools.repeat(Shuffled(data, batch_size, seed)))


def _grad_norm(model: nn.Module, data: DataSpec, loss_fn) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(data.x_train), data.y_train)
    grads = torch.autograd.grad(loss, params)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def loss_paths(
    start: nn.Module,
    loss_fn,
    data: DataSpec,
    *,
    optimizer: Callable[[Any], torch.optim.Optimizer],
    batch_size: int,
    runs: int,
    max_steps: int,
    check_every: int,
    domain: Interval,
    seeds: Sequence[int],
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Full-data training loss along independent runs from one start, each stopped at its exit.

    Parameters
    ----------
    start : torch.nn.Module
        The weights every run starts from (deep-copied; never changed).
    loss_fn : callable (outputs, targets) -> mean loss
    data : DataSpec
        Training split: minibatches of the runs and the full-data loss of the checks.
    optimizer : callable
        ``optimizer(parameters) -> torch.optim.Optimizer`` (a fresh one per run, e.g. wrapping
        :func:`experiments.optim.make_optimizer`); steps go through
        :func:`experiments.optim.training_step`.
    batch_size : int
        Minibatch size B (``data.n_train``: full-batch steps, deterministic).
    runs : int
        Number of runs R.
    max_steps, check_every : int
        Horizon and spacing of the loss checks, in optimizer steps (``max_steps`` a multiple of
        ``check_every``).
    domain : sgn_memory.sde.Interval
        The basin, as a set of loss values: ``Interval(high=L_min + delta)`` (leave a minimum),
        ``Interval(low=L_saddle - delta)`` (descend from a saddle).  A non-finite loss is
        outside (a diverged run has escaped).
    seeds : sequence of int
        Seed of the minibatch stream of each run (length >= ``runs``).
    progress : callable, optional
        Called with the run index after each run.

    Returns
    -------
    numpy.ndarray
        ``(runs, max_steps // check_every + 1)``: the loss at step 0 (the start, which must lie
        inside ``domain``) and at every check; after a run's exit its last value is repeated (the
        stopped process).  ``sgn_memory.escape_times(paths, domain=domain, dt=check_every)``
        turns it into exit times in optimizer steps.
    """
    n_checks = max_steps // check_every
    if n_checks < 1 or max_steps % check_every:
        raise SgnMemoryError(
            f"max_steps ({max_steps}) must be a positive multiple of check_every ({check_every})."
        )
    if len(seeds) < runs:
        raise SgnMemoryError(f"need {runs} seeds, one per run; got {len(seeds)}.")
    paths = np.empty((runs, n_checks + 1))
    paths[:, 0] = _train_loss(start, data, loss_fn)
    if not domain.inside(paths[:1, 0], 0)[0]:
        raise SgnMemoryError(
            f"the start (loss {paths[0, 0]:.6g}) lies outside the basin {domain}: nothing to "
            "escape from."
        )
    full = batch_size >= data.n_train
    for r in range(runs):
        model = copy.deepcopy(start)
        opt = optimizer(model.parameters())
        batches = (
            itertools.repeat(_full_data(data)[0]) if full else _batches(data, batch_size, seeds[r])
        )
        for k in range(1, n_checks + 1):
            for _ in range(check_every):
                x, y = next(batches)
                training_step(model, loss_fn, opt, x, y)
            paths[r, k] = _train_loss(model, data, loss_fn)
            if not domain.inside(paths[r, k : k + 1], 0)[0]:
                paths[r, k + 1 :] = paths[r, k]
                break
        if progress is not None:
            progress(r)
    return paths


def _escape(paths: np.ndarray, domain: Interval, check_every: int, settings: dict, seed: int):
    return sgn.escape_times(
        paths,
        domain=domain,
        dt=float(check_every),
        confidence=settings["confidence"],
        n_bootstrap=settings["n_bootstrap"],
        rng=seed,
    )


def _escape_columns(esc) -> dict[str, Any]:
    """The columns every escape table has, from an :class:`sgn_memory.EscapeTimes`."""
    e = esc.exponential
    return {
        "n_runs": esc.n_paths,
        "n_escaped": esc.n_paths - esc.n_censored,
        "censored_fraction": esc.censored_fraction,
        "horizon": esc.horizon,
        "km_mean": esc.mean,
        "km_mean_se": esc.mean_stderr,
        "km_mean_low": esc.mean_ci[0],
        "km_mean_high": esc.mean_ci[1],
        "mean_restricted": esc.mean_restricted,
        "km_median": esc.median,
        "km_median_low": esc.median_ci[0],
        "km_median_high": esc.median_ci[1],
        "exp_mean": e.mean,
        "exp_mean_low": e.mean_ci[0],
        "exp_mean_high": e.mean_ci[1],
        "exp_pvalue": e.pvalue,
    }


def _times_rows(esc, keys: dict) -> list[dict]:
    """One row per run: time (the horizon where censored) and whether the exit was seen."""
    t = np.where(esc.censored, esc.horizon, esc.times)
    return [
        {**keys, "run": i, "time": float(t[i]), "escaped": not bool(esc.censored[i])}
        for i in range(t.size)
    ]
