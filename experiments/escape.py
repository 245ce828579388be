"""Escape-time experiments: how long SGD, and its fBM-driven SDE model, stays in a minimum or at
a saddle.

Two claims are put to the test.  Tan, Zhang & Liu (arXiv:2105.02062) argue from the first-passage
time of dX = -U'(X) dt + sigma dB^H that SGD stays longer in flat minima when the Hurst exponent
H of its noise is larger.  Kim et al., "Stability Analysis of Sharpness-Aware Minimization"
(arXiv:2301.06308), argue that SAM escapes saddle points more slowly than SGD, and that momentum
and the batch size mitigate this.  Three parts, each resumable and each writing a CSV and a
Markdown table into ``out/``:

``sde``  (``sde_escape.csv``)
    The SDE in the flat and the sharp well of a double well of equal depth
    (:class:`~sgn_memory.sde.DoubleWell`), over a grid of H, under both noise scalings ("fbm":
    per-step std sigma dt^H; "per-step": sigma sqrt(dt) for every H).  Paths start at the bottom
    of a well and escape at the first touch of the saddle (or of the neighbouring minimum:
    ``target``); :func:`sgn_memory.simulate_sde` + :func:`sgn_memory.escape_times` give the
    Kaplan-Meier mean and median with their intervals, set next to both closed-form
    approximations of :func:`sgn_memory.mean_escape_time_approx`.  One horizon for every cell,
    so the restricted means (areas under the survival curves up to it) compare directly.
``sgd``  (``sgd_escape.csv``, ``sgd_escape_times.csv``, ``noise/sgd-*``)
    Real SGD on a small network.  Two minima of clearly different sharpness are found by the
    dynamical-stability argument of Wu, Ma & E (2018) (a minimum of top Hessian eigenvalue
    lambda is linearly stable for step size lr only if lr lambda < 2, and small-batch noise
    shrinks that region further): full-batch gradient descent with a small step (``sharp``)
    may settle in a sharp minimum, small-batch SGD with a large step (``flat``) cannot, and is
    left in a flat one.  Both are then polished by full-batch gradient descent and L-BFGS (a
    local descent, so the basin is kept) and measured: loss L_min, gradient norm, lambda_max
    (Lanczos).  From each minimum and for each (B, lr) of a grid: (a) one run of ``noise_steps``
    steps with the :class:`~sgn_memory.collect.NoiseCollector` attached (exact full-gradient
    reference every step) gives the H of the noise (median over coordinates of Whittle and DFA,
    each next to its shuffled baseline); (b) ``runs`` independent SGD runs (run r uses minibatch
    stream r) count the iterations until the full-data loss leaves the basin, i.e. first exceeds
    L_min + ``delta``, checked every ``check_every`` steps and censored at ``max_steps``.
``saddle``  (``saddle_escape.csv``, ``saddle_escape_times.csv``)
    SGD, SAM and StableSAM (momentum 0 and 0.9, several batch sizes and SAM radii) started next
    to the strict saddle w = 0 of a two-layer network without biases (linear or tanh); the
    saddle is certified by the dense Hessian there (negative eigenvalues) and by Lanczos
    (:func:`~experiments.sharpness.top_hessian_eigenvalue`, ``which="LA"``; its smallest Ritz
    value).  Every run starts from the same seeded perturbation w0 (std ``perturbation`` per
    weight), so runs differ only by their minibatch order; escape = the full-data loss first
    falls to L(0) - ``delta``.

Then ``plots/escape_*.png`` and ``escape.md``: the three tables, each with a paragraph saying what
was measured and whether it agrees with the claim.

Why the basin is a loss level and not a ball around the minimum: the sublevel set
{L < L_min + delta} is the basin of depth delta of the first-passage picture (the SDE wells have
equal depth too), it is the same set whatever parameterisation the network uses (rescalings of
ReLU layers change the sharpness but not the loss, Dinh et al. 2017), and it needs no radius per
minimum, which would have to grow with the minimum's width.  Exits between two checks are missed
(the exit time is biased up by at most ``check_every``), as with the grid-time checks of the SDE.

All escape statistics come from :func:`sgn_memory.escape_times` applied to the checked loss
paths with ``domain=Interval(high=L_min + delta)`` (or ``Interval(low=L(0) - delta)``): the
Kaplan-Meier mean is the restricted mean E[min(T, max_steps)] wherever a run is censored
(``mean_restricted``), a lower bound of E[T], never an average of censoring times.

Configuration: a TOML file with ``kind = "escape"`` and an ``[escape]`` table, e.g. the preset
``experiments/presets/escape.toml``; every key and its default is in :data:`ESCAPE_DEFAULTS`
(unknown keys raise a ``ValueError`` naming them).  Output folder::

    OUT/escape_settings.json            the resolved settings and the hash of each part
    OUT/sde_escape.{csv,md}             part 1
    OUT/sgd_escape.{csv,md}  sgd_escape_times.csv  noise/sgd-<minimum>-b<B>-lr<lr>/
    OUT/saddle_escape.{csv,md}  saddle_escape_times.csv
    OUT/plots/escape_sde.png  escape_sgd_hurst.png  escape_saddle_survival.png
    OUT/escape.md

References
----------
1. C. Tan, J. Zhang and J. Liu, "Understanding long range memory effects in deep neural
   networks", arXiv:2105.02062.
2. M. Kim, D. Li, S. X. Hu and T. Hospedales, "Stability Analysis of Sharpness-Aware
   Minimization", arXiv:2301.06308 (2023).
3. L. Wu, C. Ma and W. E, "How SGD selects the global minima in over-parameterized learning: a
   dynamical stability perspective", NeurIPS 2018.
4. N. S. Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
   minima", ICLR 2017.
5. L. Dinh, R. Pascanu, S. Bengio and Y. Bengio, "Sharp minima can generalize for deep nets",
   ICML 2017.
6. P. Royston and M. K. B. Parmar, "Restricted mean survival time: an alternative to the hazard
   ratio", BMC Med. Res. Methodol. 13 (2013) 152 (comparing restricted means).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats
import torch
from torch import nn

import sgn_memory as sgn
from sgn_memory.errors import DegenerateSeriesWarning, SgnMemoryError
from sgn_memory.sde import DoubleWell, Interval

from .config import ConfigError
from .data import DataSpec, full_batches, load_dataset
from .models import build_model, count_parameters
from .optim import make_optimizer, training_step
from .runner import Shuffled, _to, evaluate, pick_device
from .sharpness import top_hessian_eigenvalue

__all__ = [
    "ESCAPE_DEFAULTS",
    "PARTS",
    "dense_hessian_eigenvalues",
    "find_minimum",
    "loss_paths",
    "resolve_settings",
    "run_escape",
    "saddle_network",
]

#: Bumped when a change of this module changes the numbers a part produces (invalidates results).
_VERSION = 1
#: The parts, in the order they run.
PARTS = ("sde", "sgd", "saddle")
#: Keys a configuration file may have next to ``[escape]``.
_TOP_KEYS = {"name", "kind", "description", "out", "threads", "escape"}
#: Tables whose content is passed on as keyword arguments (not checked against a schema).
_FREE_TABLES = {"dataset_kwargs", "model_kwargs"}

#: The ``[escape]`` table: every key and its default.
ESCAPE_DEFAULTS: dict[str, Any] = {
    "seed": 0,  # every random choice of every part derives from it
    "parts": list(PARTS),  # the parts to run
    "confidence": 0.95,  # level of every interval
    "n_bootstrap": 199,  # replicates of the exponential-law check of escape_times
    "sde": {
        "hursts": [0.3, 0.4, 0.5, 0.6, 0.7],
        "scalings": ["fbm", "per-step"],
        "depth": 1.0,  # barrier height of both wells
        "flat": 0.25,  # U'' at the flat minimum
        "sharp": 4.0,  # U'' at the sharp minimum
        "saddle_curvature": 1.0,  # |U''| at the saddle
        "sigma": 0.8165,  # sqrt(2/3): depth / D = 3 at H = 1/2 (D = sigma^2 / 2)
        "dt": 0.01,
        "n_steps": 50_000,  # one horizon for every cell: n_steps * dt
        "n_paths": 500,
        "target": "saddle",  # "saddle": first touch of the basin's edge; "minimum": transition
    },
    "sgd": {
        "dataset": "teacher_student",
        "dataset_kwargs": {"n_train": 1024, "n_test": 128, "d": 10, "hidden": [20], "noise": 0.3},
        "model": "mlp",
        "model_kwargs": {"depth": 1, "width": 32},
        # how each minimum is reached from the common initialisation; batch_size 0 = full batch
        "sharp": {"batch_size": 0, "lr": 0.05, "steps": 3000},
        "flat": {"batch_size": 8, "lr": 0.25, "steps": 5000},
        "polish_lr": 0.02,  # full-batch GD steps after training ...
        "polish_steps": 1000,
        "lbfgs_iters": 500,  # ... then L-BFGS (strong Wolfe) iterations
        "sharpness_iters": 50,  # Lanczos iterations for lambda_max
        # the escape runs: optimizer (experiments.optim.make_optimizer) and grid
        "optimizer": "sgd",
        "momentum": 0.9,  # used by "momentum" and by SAM-type optimizers (base "momentum")
        "rho": 0.05,  # used by SAM-type optimizers
        "batch_sizes": [8, 32],
        "lrs": [0.01, 0.02],
        "delta": 0.006,  # basin: full-data loss <= L_min + delta
        "check_every": 5,
        "max_steps": 4000,  # censoring time, a multiple of check_every
        "runs": 20,
        # the noise run per cell (NoiseCollector, exact reference) and its Hurst estimates
        "noise_steps": 2000,
        "coordinates": 500,  # capped at the number of parameters
        "n_surrogates": 5,  # shuffled copies per series for the baseline
    },
    "saddle": {
        "dataset": "teacher_student",
        "dataset_kwargs": {
            "n_train": 512,
            "n_test": 64,
            "d": 10,
            "hidden": [20],
            "m": 4,
            "noise": 0.3,
        },
        "width": 8,
        "activation": "linear",  # "linear" or "tanh" (no biases: w = 0 is a critical point)
        "perturbation": 1e-3,  # std per weight of the start w0 around the saddle
        "optimizers": ["sgd", "sam", "stablesam"],
        "momenta": [0.0, 0.9],
        "batch_sizes": [8, 64],
        "rhos": [0.002, 0.005],  # SAM radii (SAM-type optimizers only)
        "lr": 0.05,
        "delta": 0.05,  # escape: full-data loss <= L(0) - delta
        "check_every": 1,
        "max_steps": 1500,
        "runs": 20,
        "hessian_iters": 100,  # Lanczos iterations at the saddle
    },
}

_SCALINGS = ("fbm", "per-step")
_TARGETS = ("saddle", "minimum")
_ACTIVATIONS = ("linear", "tanh")
_SADDLE_OPTIMIZERS = ("sgd", "sam", "stablesam")
#: Largest network whose Hessian is formed densely at the saddle.
_DENSE_HESSIAN_MAX = 2000
#: Fewest noise rows the Hurst estimates are computed from.
_MIN_NOISE_ROWS = 256


# ============================================================================ configuration
def resolve_settings(config: dict) -> dict:
    """The ``[escape]`` settings of a parsed TOML file, merged into :data:`ESCAPE_DEFAULTS`.

    Parameters
    ----------
    config : dict
        The whole parsed file: ``name``, ``kind`` (when present, ``"escape"``), ``description``,
        ``out``, ``threads`` (torch CPU threads while it runs; small models run fastest on 1)
        and the ``escape`` table.

    Returns
    -------
    dict
        A new dict with every key of :data:`ESCAPE_DEFAULTS`.

    Raises
    ------
    ConfigError
        (a ``ValueError``) For an unknown key at any level (the message names the key(s), where
        they are and the known ones), a value of the wrong type, or an impossible value.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a table (dict); got {type(config).__name__}.")
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {unknown} in an escape configuration; known: "
            f"{sorted(_TOP_KEYS)}."
        )
    if config.get("kind", "escape") != "escape":
        raise ConfigError(f"kind must be 'escape' for run_escape; got {config['kind']!r}.")
    threads = config.get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads must be a positive integer; got {threads!r}.")
    table = config.get("escape", {})
    settings = _merge(ESCAPE_DEFAULTS, table, "[escape]")
    _check_values(settings)
    return settings


def _merge(defaults: dict, given: Any, where: str) -> dict:
    if not isinstance(given, dict):
        raise ConfigError(f"{where} must be a table; got {type(given).__name__}.")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(defaults)}.")
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        default = defaults[key]
        here = f"{where}.{key}" if not where.endswith("]") else f"{where[:-1]}.{key}]"
        if isinstance(default, dict) and key not in _FREE_TABLES:
            out[key] = _merge(default, value, here)
            continue
        _check_type(value, default, here)
        out[key] = copy.deepcopy(value)
    return out


def _check_type(value: Any, default: Any, where: str) -> None:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{where} must be of type {type(default).__name__} (like {default!r}); got {value!r}."
        )


def _check_values(s: dict) -> None:
    """Impossible settings, named; the library checks the rest when it runs."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    bad = [p for p in s["parts"] if p not in PARTS]
    need(not bad, f"[escape].parts: unknown part(s) {bad}; known: {list(PARTS)}.")
    need(0 < s["confidence"] < 1, "[escape].confidence must lie strictly between 0 and 1.")
    need(s["n_bootstrap"] >= 0, "[escape].n_bootstrap must be >= 0.")
    sde = s["sde"]
    need(
        bool(sde["hursts"]) and all(0 < h < 1 for h in sde["hursts"]),
        "[escape.sde].hursts must be a non-empty list of values in (0, 1).",
    )
    bad = [x for x in sde["scalings"] if x not in _SCALINGS]
    need(
        bool(sde["scalings"]) and not bad,
        f"[escape.sde].scalings must be a non-empty list of {list(_SCALINGS)}; got {bad}.",
    )
    need(sde["target"] in _TARGETS, f"[escape.sde].target must be one of {list(_TARGETS)}.")
    for key in ("depth", "flat", "sharp", "saddle_curvature", "sigma", "dt"):
        need(sde[key] > 0, f"[escape.sde].{key} must be positive.")
    need(
        sde["n_steps"] >= 1 and sde["n_paths"] >= 1,
        "[escape.sde].n_steps and n_paths must be >= 1.",
    )
    for part in ("sgd", "saddle"):
        p = s[part]
        where = f"[escape.{part}]"
        need(p["check_every"] >= 1, f"{where}.check_every must be >= 1.")
        need(
            p["max_steps"] >= p["check_every"] and p["max_steps"] % p["check_every"] == 0,
            f"{where}.max_steps must be a positive multiple of check_every "
            f"({p['check_every']}); got {p['max_steps']}.",
        )
        need(p["runs"] >= 1, f"{where}.runs must be >= 1.")
        need(p["delta"] > 0, f"{where}.delta must be positive.")
        need(
            bool(p["batch_sizes"]) and all(isinstance(b, int) and b >= 1 for b in p["batch_sizes"]),
            f"{where}.batch_sizes must be a non-empty list of positive integers.",
        )
    g = s["sgd"]
    need(
        bool(g["lrs"]) and all(lr > 0 for lr in g["lrs"]),
        "[escape.sgd].lrs must be a non-empty list of positive numbers.",
    )
    for name in ("sharp", "flat"):
        m = g[name]
        need(
            m["batch_size"] >= 0 and m["lr"] > 0 and m["steps"] >= 0,
            f"[escape.sgd.{name}] needs batch_size >= 0 (0: full batch), lr > 0, steps >= 0.",
        )
    need(
        g["noise_steps"] >= _MIN_NOISE_ROWS,
        f"[escape.sgd].noise_steps must be >= {_MIN_NOISE_ROWS} (the Hurst estimates need it).",
    )
    need(
        g["coordinates"] >= 1 and g["n_surrogates"] >= 1,
        "[escape.sgd].coordinates and n_surrogates must be >= 1.",
    )
    d = s["saddle"]
    need(
        d["activation"] in _ACTIVATIONS,
        f"[escape.saddle].activation must be one of {list(_ACTIVATIONS)}.",
    )
    bad = [o for o in d["optimizers"] if o not in _SADDLE_OPTIMIZERS]
    need(
        bool(d["optimizers"]) and not bad,
        f"[escape.saddle].optimizers must be a non-empty list of {list(_SADDLE_OPTIMIZERS)}; "
        f"got {bad}.",
    )
    need(
        bool(d["momenta"]) and all(0 <= m < 1 for m in d["momenta"]),
        "[escape.saddle].momenta must be a non-empty list of values in [0, 1).",
    )
    need(
        bool(d["rhos"]) and all(r > 0 for r in d["rhos"]),
        "[escape.saddle].rhos must be a non-empty list of positive radii.",
    )
    need(
        d["width"] >= 1 and d["lr"] > 0 and d["perturbation"] > 0,
        "[escape.saddle] needs width >= 1, lr > 0 and perturbation > 0.",
    )


def _part_hash(settings: dict, part: str) -> str:
    """Hash of everything that decides a part's numbers."""
    blob = json.dumps(
        {
            "version": _VERSION,
            "part": part,
            "seed": settings["seed"],
            "confidence": settings["confidence"],
            "n_bootstrap": settings["n_bootstrap"],
            "settings": settings[part],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


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


# ============================================================================ part 1: the SDE
def _run_sde(settings: dict, out: Path, log: Callable[[str], None], verbose: bool) -> dict:
    s = settings["sde"]
    gens = np.random.default_rng(settings["seed"]).spawn(len(s["scalings"]) * 2 * len(s["hursts"]))
    rows = []
    cells = itertools.product(s["scalings"], ("flat", "sharp"), s["hursts"])
    for (scaling, well, hurst), gen in zip(cells, gens, strict=True):
        k, other = (s["flat"], s["sharp"]) if well == "flat" else (s["sharp"], s["flat"])
        # the paths start in well 0 (left), of curvature k; the other well is the landing side
        pot = DoubleWell(
            barrier=s["depth"],
            curvature=k,
            saddle_curvature=s["saddle_curvature"],
            curvature_right=other,
        )
        t0 = time.perf_counter()
        sim = sgn.simulate_sde(
            pot,
            pot.well(0).minimum,
            hurst=hurst,
            sigma=s["sigma"],
            dt=s["dt"],
            n_steps=s["n_steps"],
            size=s["n_paths"],
            scaling=scaling,
            domain=pot.escape_domain(0, target=s["target"]),
            keep="final",
            rng=gen,
        )
        esc = sgn.escape_times(
            sim, confidence=settings["confidence"], n_bootstrap=settings["n_bootstrap"], rng=gen
        )
        approx = {
            m: sgn.mean_escape_time_approx(
                pot,
                hurst=hurst,
                sigma=s["sigma"],
                scaling=scaling,
                dt=s["dt"],
                method=m,
                target=s["target"],
                horizon=esc.horizon,
            )
            for m in ("quasi-stationary", "time-dependent")
        }
        qs, td = approx["quasi-stationary"], approx["time-dependent"]
        rows.append(
            {
                "scaling": scaling,
                "well": well,
                "curvature": k,
                "depth": s["depth"],
                "saddle_curvature": s["saddle_curvature"],
                "hurst": hurst,
                "sigma": s["sigma"],
                "sigma_fbm": sim.sigma_fbm,
                "dt": s["dt"],
                "n_steps": s["n_steps"],
                "target": s["target"],
                **_escape_columns(esc),
                "kramers": qs.kramers,
                "approx_qs_mean": qs.mean,
                "approx_qs_restricted": qs.restricted_mean,
                "approx_td_mean": td.mean,
                "approx_td_restricted": td.restricted_mean,
                "approx_td_escape_probability": td.escape_probability,
            }
        )
        if verbose:
            log(
                f"    sde {scaling:8s} {well:5s} H={hurst:.2f}: mean {esc.mean:.4g}"
                f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
            )
    return {"table": pd.DataFrame(rows)}


# ============================================================================ part 2: real SGD
def find_minimum(
    model: nn.Module,
    data: DataSpec,
    loss_fn,
    *,
    batch_size: int,
    lr: float,
    steps: int,
    polish_lr: float,
    polish_steps: int,
    lbfgs_iters: int,
    seed: int,
) -> dict[str, Any]:
    """Train ``model`` in place into a minimum: SGD or GD, then GD polish, then L-BFGS.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place.
    data : DataSpec
    loss_fn : callable
    batch_size : int
        Minibatch size of the first phase; 0 (or >= the training size): full-batch gradient
        descent.
    lr, steps : float, int
        Step size and length of the first phase (plain SGD).
    polish_lr, polish_steps : float, int
        Full-batch gradient descent after it (brings the iterate to the bottom of the basin the
        first phase left it in).
    lbfgs_iters : int
        Then at most this many L-BFGS iterations with a strong-Wolfe line search on the
        full-data loss (a descent method: it stays in the basin; reverted if it fails).
    seed : int
        Seed of the first phase's minibatch stream.

    Returns
    -------
    dict
        ``loss`` (full data), ``grad_norm`` (Euclidean norm of the full gradient; for a ReLU
        network the minimum often sits on a kink, where it cannot vanish), ``trained_loss``
        (after the first phase) and ``diverged`` (True if the first phase blew up; the model is
        then left as it was).
    """
    x_all, y_all = _full_data(data)[0]
    full = batch_size == 0 or batch_size >= data.n_train
    opt = make_optimizer("sgd", model.parameters(), lr=lr)
    batches = itertools.repeat((x_all, y_all)) if full else _batches(data, batch_size, seed)
    saved = copy.deepcopy(model.state_dict())
    for _ in range(steps):
        x, y = next(batches)
        if not math.isfinite(training_step(model, loss_fn, opt, x, y)):
            model.load_state_dict(saved)
            return {"diverged": True}
    trained = _train_loss(model, data, loss_fn)
    polish = make_optimizer("sgd", model.parameters(), lr=polish_lr)
    for _ in range(polish_steps):
        training_step(model, loss_fn, polish, x_all, y_all)
    before = copy.deepcopy(model.state_dict())
    before_loss = _train_loss(model, data, loss_fn)
    if lbfgs_iters > 0:
        lbfgs = torch.optim.LBFGS(
            model.parameters(),
            lr=1.0,
            max_iter=lbfgs_iters,
            max_eval=2 * lbfgs_iters,
            tolerance_grad=1e-10,
            tolerance_change=0.0,
            history_size=50,
            line_search_fn="strong_wolfe",
        )

        def closure():
            lbfgs.zero_grad()
            loss = loss_fn(model(x_all), y_all)
            loss.backward()
            return loss

        lbfgs.step(closure)
        model.zero_grad(set_to_none=True)
        after = _train_loss(model, data, loss_fn)
        if not (math.isfinite(after) and after <= before_loss):
            model.load_state_dict(before)
    return {
        "diverged": False,
        "trained_loss": trained,
        "loss": _train_loss(model, data, loss_fn),
        "grad_norm": _grad_norm(model, data, loss_fn),
    }


def _hurst_summary(noise: np.ndarray, n_surrogates: int, seed: int) -> dict[str, Any]:
    """Median over series of Whittle and DFA H, of their shuffled baselines and of the excess.

    ``noise`` is (series, time).  Series with a non-finite value or no variation (dead units)
    are dropped; their number is reported.
    """
    keep = np.isfinite(noise).all(axis=1)
    keep[keep] = noise[keep].std(axis=1) > 0
    x = noise[keep]
    out: dict[str, Any] = {"n_series": int(keep.sum()), "n_series_dropped": int((~keep).sum())}
    for name, estimator in (("whittle", sgn.hurst_whittle), ("dfa", sgn.hurst_dfa)):
        if x.shape[0] == 0 or x.shape[1] < _MIN_NOISE_ROWS:
            out.update(
                {
                    f"hurst_{name}": math.nan,
                    f"hurst_{name}_shuffled": math.nan,
                    f"hurst_{name}_excess": math.nan,
                }
            )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateSeriesWarning)
            sb = sgn.shuffled_baseline(x, estimator, n_surrogates=n_surrogates, rng=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
            out[f"hurst_{name}"] = float(np.nanmedian(sb.estimate.hurst))
            out[f"hurst_{name}_shuffled"] = float(np.nanmedian(sb.baseline))
            out[f"hurst_{name}_excess"] = float(np.nanmedian(sb.excess))
    return out


def _noise_run(
    start: nn.Module,
    data: DataSpec,
    loss_fn,
    *,
    optimizer: Callable,
    batch_size: int,
    steps: int,
    coordinates: int,
    store: Path,
    domain: Interval,
    check_every: int,
    n_surrogates: int,
    seed: int,
    attrs: dict,
) -> dict[str, Any]:
    """One run from ``start`` with the NoiseCollector attached; H of its noise."""
    from sgn_memory.collect import NoiseCollector
    from sgn_memory.store import NoiseStore

    model = copy.deepcopy(start)
    opt = optimizer(model.parameters())
    k = min(int(coordinates), count_parameters(model))
    collector = NoiseCollector(
        model,
        opt,
        store,
        coordinates=k,
        reference="exact",
        reference_data=list(full_batches(data, 1024)),
        loss_fn=loss_fn,
        batch_size=batch_size,
        seed=seed,
        attrs=attrs,
        overwrite=True,
    )
    batches = _batches(data, batch_size, seed)
    inside = checks = 0
    diverged_at = None
    try:
        for step in range(1, steps + 1):
            x, y = next(batches)
            loss = training_step(model, loss_fn, opt, x, y, on_loss=collector.observe_loss)
            if not math.isfinite(loss):
                diverged_at = step
                break
            if step % check_every == 0:
                checks += 1
                inside += bool(domain.inside(np.array([_train_loss(model, data, loss_fn)]), 0)[0])
    finally:
        collector.close()
    if collector.error is not None:
        raise RuntimeError(f"the NoiseCollector stopped recording: {collector.error}")
    noise = NoiseStore.open(store).read_noise().T.astype(np.float64)  # (coordinates, steps)
    return {
        "noise_steps": int(noise.shape[1]),
        "noise_coordinates": k,
        "noise_in_basin": inside / checks if checks else math.nan,
        "noise_diverged_at": diverged_at,
        **_hurst_summary(noise, n_surrogates, seed),
    }


def _make_opt(name: str, *, lr: float, momentum: float, rho: float) -> Callable:
    """``params -> optimizer`` for the escape runs (SAM-type: base SGD, with momentum if > 0)."""
    key = name.lower()
    if key in ("sam", "stablesam"):
        base = "momentum" if momentum > 0 else "sgd"
        return lambda params: make_optimizer(
            key, params, lr=lr, momentum=momentum, rho=rho, base=base
        )
    if key == "sgd" and momentum > 0:
        key = "momentum"
    return lambda params: make_optimizer(key, params, lr=lr, momentum=momentum, rho=rho)


def _run_sgd(settings: dict, out: Path, log: Callable[[str], None], verbose: bool, device) -> dict:
    s = settings["sgd"]
    seed = settings["seed"]
    kwargs = {"seed": seed, **s["dataset_kwargs"]}
    data = _to(load_dataset(s["dataset"], **kwargs), device)
    loss_fn = data.loss_fn()
    init = build_model(s["model"], data, seed=seed, **s["model_kwargs"]).to(device)
    noise_root = out / "noise"
    for old in noise_root.glob("sgd-*") if noise_root.exists() else ():
        shutil.rmtree(old)  # the part is redone: stores of other settings go
    optimizer_name = s["optimizer"]  # make_optimizer's names: "sgd" is plain SGD
    minima = {}
    for i, name in enumerate(("sharp", "flat")):
        how = s[name]
        model = copy.deepcopy(init)
        t0 = time.perf_counter()
        info = find_minimum(
            model,
            data,
            loss_fn,
            batch_size=how["batch_size"],
            lr=how["lr"],
            steps=how["steps"],
            polish_lr=s["polish_lr"],
            polish_steps=s["polish_steps"],
            lbfgs_iters=s["lbfgs_iters"],
            seed=_seed(seed, 2, i),
        )
        if info["diverged"]:
            raise SgnMemoryError(
                f"training towards the {name} minimum diverged (batch_size {how['batch_size']}, "
                f"lr {how['lr']}); lower [escape.sgd.{name}].lr."
            )
        sharp = top_hessian_eigenvalue(
            model, loss_fn, _full_data(data), max_iter=s["sharpness_iters"], tol=1e-4, seed=seed
        )
        test = evaluate(model, data, loss_fn, split="test")["test_loss"]
        b = how["batch_size"] or data.n_train
        minima[name] = {
            "model": model,
            "minimum": name,
            "found_by": (
                f"{'GD' if b >= data.n_train else f'SGD B={b}'} lr={how['lr']:g} x{how['steps']}"
                f" + GD lr={s['polish_lr']:g} x{s['polish_steps']} + L-BFGS"
            ),
            "loss_min": info["loss"],
            "test_loss_min": test,
            "grad_norm_min": info["grad_norm"],
            "lambda_max": sharp.eigenvalue,
            "lambda_max_converged": bool(sharp.converged),
        }
        log(
            f"  {name} minimum: loss {info['loss']:.5g}, |grad| {info['grad_norm']:.2g}, "
            f"lambda_max {sharp.eigenvalue:.4g} ({time.perf_counter() - t0:.1f} s)"
        )
    rows, times = [], []
    run_seeds = [_seed(seed, 3, r) for r in range(s["runs"])]
    for name, m in minima.items():
        domain = Interval(high=m["loss_min"] + s["delta"])
        for b, lr in itertools.product(s["batch_sizes"], s["lrs"]):
            t0 = time.perf_counter()
            opt = functools.partial(
                make_optimizer, optimizer_name, lr=lr, momentum=s["momentum"], rho=s["rho"]
            )
            cell = f"sgd-{name}-b{b}-lr{lr:g}"
            noise = _noise_run(
                m["model"],
                data,
                loss_fn,
                optimizer=opt,
                batch_size=b,
                steps=s["noise_steps"],
                coordinates=s["coordinates"],
                store=noise_root / cell,
                domain=domain,
                check_every=s["check_every"],
                n_surrogates=s["n_surrogates"],
                seed=_seed(seed, 4),
                attrs={"experiment": "escape", "minimum": name, "lr": lr},
            )
            paths = loss_paths(
                m["model"],
                loss_fn,
                data,
                optimizer=opt,
                batch_size=b,
                runs=s["runs"],
                max_steps=s["max_steps"],
                check_every=s["check_every"],
                domain=domain,
                seeds=run_seeds,
            )
            esc = _escape(paths, domain, s["check_every"], settings, seed)
            keys = {"minimum": name, "batch_size": b, "lr": lr}
            rows.append(
                {
                    **keys,
                    **{k: v for k, v in m.items() if k not in ("model", "minimum")},
                    "optimizer": optimizer_name,
                    "lr_lambda": lr * m["lambda_max"],
                    "delta": s["delta"],
                    "check_every": s["check_every"],
                    **noise,
                    **_escape_columns(esc),
                }
            )
            times += _times_rows(esc, keys)
            if verbose:
                log(
                    f"    {cell}: H whittle {noise['hurst_whittle']:.3f} (shuffled "
                    f"{noise['hurst_whittle_shuffled']:.3f}), escape mean {esc.mean:.4g}"
                    f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                    f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
                )
    return {"table": pd.DataFrame(rows), "times": pd.DataFrame(times)}


# ============================================================================ part 3: a saddle
def saddle_network(data: DataSpec, width: int, activation: str = "linear") -> nn.Sequential:
    """Two-layer network without biases, all weights 0: w = 0 is a critical point.

    ``Linear(d, width) -> [Tanh] -> Linear(width, m)``.  At w = 0 every per-sample gradient
    vanishes (each layer's gradient carries the other layer's weights), and so does the noise.
    For the mean squared error the Hessian there has zero diagonal blocks and off-diagonal blocks
    built from the input-output cross-covariance C = E[y x^T]: its eigenvalues are
    +-(2 / m) s_i, s_i the singular values of C (each ``width`` times), and zeros, so w = 0 is a
    strict saddle whenever C != 0 (tanh has the same Hessian there: tanh'(0) = 1, tanh''(0) = 0).

    Parameters
    ----------
    data : DataSpec
        Regression data (``kind == "regression"``): fixes d and m.
    width : int
    activation : {"linear", "tanh"}
    """
    if data.kind != "regression":
        raise SgnMemoryError(f"the saddle network needs regression data; got {data.kind!r}.")
    if activation not in _ACTIVATIONS:
        raise SgnMemoryError(f"activation must be one of {_ACTIVATIONS}; got {activation!r}.")
    d = math.prod(data.input_shape)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(d, width, bias=False)]
    if activation == "tanh":
        layers.append(nn.Tanh())
    layers.append(nn.Linear(width, data.n_outputs, bias=False))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return net


def dense_hessian_eigenvalues(model: nn.Module, loss_fn, data: DataSpec) -> np.ndarray:
    """All eigenvalues (ascending) of the Hessian of the full-data loss at the current weights.

    Formed densely (reverse-over-reverse, float64 eigensolver): for networks of at most
    2000 parameters.
    """
    from torch.func import functional_call

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
    sizes = [p.numel() for p in params]
    if sum(sizes) > _DENSE_HESSIAN_MAX:
        raise SgnMemoryError(
            f"a dense Hessian of {sum(sizes)} parameters is too large (at most "
            f"{_DENSE_HESSIAN_MAX}); use experiments.sharpness.top_hessian_eigenvalue."
        )
    x, y = _full_data(data)[0]

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(flat, sizes)
        weights = {n: v.view_as(p) for n, v, p in zip(names, pieces, params, strict=True)}
        return loss_fn(functional_call(model, weights, (x,)), y)

    flat = torch.cat([p.reshape(-1) for p in params])
    hess = torch.autograd.functional.hessian(loss_of, flat)
    hess = 0.5 * (hess + hess.T)
    return np.linalg.eigvalsh(hess.detach().cpu().double().numpy())


def _run_saddle(
    settings: dict, out: Path, log: Callable[[str], None], verbose: bool, device
) -> dict:
    s = settings["saddle"]
    seed = settings["seed"]
    data = _to(load_dataset(s["dataset"], **{"seed": seed, **s["dataset_kwargs"]}), device)
    loss_fn = data.loss_fn()
    saddle = saddle_network(data, s["width"], s["activation"]).to(device)
    loss_saddle = _train_loss(saddle, data, loss_fn)
    eig = dense_hessian_eigenvalues(saddle, loss_fn, data)
    lanczos = top_hessian_eigenvalue(
        saddle,
        loss_fn,
        _full_data(data),
        max_iter=s["hessian_iters"],
        tol=1e-6,
        which="LA",
        seed=seed,
    )
    scale = max(abs(eig[0]), abs(eig[-1]), 1e-30)
    hess = {
        "loss_saddle": loss_saddle,
        "hessian_lambda_min": float(eig[0]),
        "hessian_lambda_max": float(eig[-1]),
        "hessian_n_negative": int((eig < -1e-6 * scale).sum()),
        "hessian_n_params": int(eig.size),
        "lanczos_lambda_max": lanczos.eigenvalue,
        "lanczos_min_ritz": float(lanczos.ritz_values[0]),
    }
    log(
        f"  saddle w = 0: loss {loss_saddle:.5g}, Hessian eigenvalues in [{eig[0]:.4g}, "
        f"{eig[-1]:.4g}] ({hess['hessian_n_negative']} of {eig.size} negative); Lanczos "
        f"{lanczos.eigenvalue:.4g}, smallest Ritz value {hess['lanczos_min_ritz']:.4g}"
    )
    start = copy.deepcopy(saddle)
    gen = torch.Generator().manual_seed(_seed(seed, 5))
    with torch.no_grad():
        for p in start.parameters():
            p.copy_(s["perturbation"] * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    start_loss = _train_loss(start, data, loss_fn)
    domain = Interval(low=loss_saddle - s["delta"])
    run_seeds = [_seed(seed, 6, r) for r in range(s["runs"])]
    rows, times = [], []
    configs = [
        (opt, mom, b, rho if opt != "sgd" else math.nan)
        for opt in s["optimizers"]
        for rho in (s["rhos"] if opt != "sgd" else [math.nan])
        for mom in s["momenta"]
        for b in s["batch_sizes"]
    ]
    for opt, mom, b, rho in configs:
        t0 = time.perf_counter()
        make = _make_opt(opt, lr=s["lr"], momentum=mom, rho=0.0 if opt == "sgd" else rho)
        paths = loss_paths(
            start,
            loss_fn,
            data,
            optimizer=make,
            batch_size=b,
            runs=s["runs"],
            max_steps=s["max_steps"],
            check_every=s["check_every"],
            domain=domain,
            seeds=run_seeds,
        )
        esc = _escape(paths, domain, s["check_every"], settings, seed)
        keys = {"optimizer": opt, "momentum": mom, "batch_size": b, "rho": rho}
        rows.append(
            {
                **keys,
                "lr": s["lr"],
                "activation": s["activation"],
                "width": s["width"],
                "perturbation": s["perturbation"],
                "start_loss": start_loss,
                **hess,
                "delta": s["delta"],
                "check_every": s["check_every"],
                **_escape_columns(esc),
            }
        )
        times += _times_rows(esc, keys)
        if verbose:
            log(
                f"    {opt:9s} momentum {mom:g} B={b} rho={rho:g}: mean {esc.mean:.4g}"
                f"{' (restricted)' if esc.mean_restricted else ''}, censored "
                f"{esc.censored_fraction:.0%} ({time.perf_counter() - t0:.1f} s)"
            )
    return {"table": pd.DataFrame(rows), "times": pd.DataFrame(times)}


# ============================================================================ tables, verdicts
def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    v = float(v)
    if math.isnan(v):
        return "—"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if 1000 <= abs(v) < 1e6 and digits >= 3:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def _pct(x) -> str:
    x = float(x)
    if math.isnan(x):
        return "—"
    if 0 < x < 0.01:
        return "<1%"
    if 0.99 < x < 1:
        return ">99%"
    return f"{x:.0%}"


def _mean_cell(r) -> str:
    bound = "≥ " if bool(r["mean_restricted"]) else ""
    return f"{bound}{_fmt(r['km_mean'])} [{_fmt(r['km_mean_low'])}, {_fmt(r['km_mean_high'])}]"


def _median_cell(r) -> str:
    if not math.isfinite(r["km_median"]):
        return f"> {_fmt(r['horizon'])}"
    return f"{_fmt(r['km_median'])} [{_fmt(r['km_median_low'])}, {_fmt(r['km_median_high'])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _compare(a, b, confidence: float) -> int:
    """+1 if restricted mean a > b, -1 if a < b (two-sided z test at ``confidence``), else 0.

    Both restricted to the same horizon; the standard errors are Klein-Moeschberger's.  Runs of
    two configurations share minibatch streams, which makes the independent-samples test
    conservative.
    """
    diff = float(a["km_mean"]) - float(b["km_mean"])
    se = math.hypot(float(a["km_mean_se"]), float(b["km_mean_se"]))
    z = scipy.special.ndtri(0.5 + confidence / 2)
    if se == 0:
        return 0 if diff == 0 else int(np.sign(diff))
    return int(np.sign(diff)) if abs(diff) > z * se else 0


def _trend(h: np.ndarray, rows: list, confidence: float) -> tuple[str, float]:
    """Direction of the restricted mean along H: (words, Spearman correlation)."""
    means = np.array([float(r["km_mean"]) for r in rows])
    rho = float(scipy.stats.spearmanr(h, means).statistic) if np.ptp(means) > 0 else 0.0
    ends = _compare(rows[-1], rows[0], confidence)
    if ends > 0 and rho > 0:
        return "longer with H", rho
    if ends < 0 and rho < 0:
        return "shorter with H", rho
    return "no clear trend", rho


def _sde_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["sde"]
    conf = settings["confidence"]
    lines = ["## 1. Escape of the fBM-driven SDE from a flat and a sharp well", ""]
    horizon = s["n_steps"] * s["dt"]
    lines.append(
        f"dX = -U'(X) dt + sigma dB^H in `DoubleWell` wells of equal depth {s['depth']:g} (U'' = "
        f"{s['flat']:g} flat, {s['sharp']:g} sharp; |U''| = {s['saddle_curvature']:g} at the "
        f"saddle), sigma = {s['sigma']:g}, dt = {s['dt']:g}, {s['n_paths']} paths per cell from "
        f"the bottom of the well, escape = first touch of the {s['target']}, censored at t = "
        f"{horizon:g} ({s['n_steps']} steps) in every cell.  KM mean: area under the "
        "Kaplan-Meier curve up to that horizon ('≥': some paths censored, so a lower bound of "
        "E[T]); exp.-law mean: time at risk / escapes (extrapolates censored paths if escape is "
        "memoryless); approximations: `mean_escape_time_approx` (quasi-stationary, "
        "time-dependent = the seed paper's heuristic; ∞: it predicts that a fraction never "
        "escapes)."
    )
    verdicts = []
    for scaling in s["scalings"]:
        for well in ("flat", "sharp"):
            part = frame[(frame.scaling == scaling) & (frame.well == well)].sort_values("hurst")
            if len(part) < 2:
                continue
            records = part.to_dict("records")
            words, rho = _trend(part.hurst.to_numpy(), records, conf)
            lo, hi = records[0], records[-1]
            verdicts.append(
                (
                    scaling,
                    well,
                    words,
                    f"{_fmt(lo['km_mean'])} at H = {lo['hurst']:g} → "
                    f"{_fmt(hi['km_mean'])} at H = {hi['hurst']:g}, Spearman {rho:+.2f}",
                )
            )
    if verdicts:
        lines += ["", "Direction of the H effect (restricted means, same horizon everywhere):", ""]
        for scaling, well, words, detail in verdicts:
            agree = {"longer with H": "agrees with", "shorter with H": "contradicts"}.get(
                words, "does not decide"
            )
            trend = {
                "longer with H": "escape takes longer as H grows",
                "shorter with H": "escape comes sooner as H grows",
            }.get(words, "no clear trend of the escape time with H")
            lines.append(
                f"- `{scaling}` scaling, {well} well: {trend} ({detail}); this {agree} the "
                "claim that the iterate stays longer as H grows."
            )
        flat = [v for v in verdicts if v[1] == "flat"]
        agree_flat = [v[0] for v in flat if v[2] == "longer with H"]
        lines += [
            "",
            "**Verdict on Tan et al.'s claim (longer stay in flat minima for larger H):** "
            + (
                f"supported in the flat well under {', '.join(agree_flat)} scaling only."
                if agree_flat
                else "not supported in this model: in the flat well no noise scaling makes "
                "escape slower as H grows."
            )
            + "  Which way H acts depends on the scaling and the curvature: under `fbm` scaling "
            "the noise a well feels over its relaxation time 1/U'' is ~sigma² (1/U'')^(2H), which "
            "grows with H in a flat well (1/U'' > 1) and shrinks in a sharp one; under `per-step` "
            "scaling the continuous-time noise level sigma dt^(1/2-H) grows with H everywhere.",
        ]
    header = [
        "scaling",
        "well",
        "H",
        "sigma_fbm",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
        "exp.-law mean",
        "approx. QS",
        "approx. TD",
    ]
    rows = [
        [
            r["scaling"],
            f"{r['well']} (U''={r['curvature']:g})",
            f"{r['hurst']:g}",
            _fmt(r["sigma_fbm"]),
            _pct(r["censored_fraction"]),
            _mean_cell(r),
            _median_cell(r),
            _fmt(r["exp_mean"]),
            _fmt(r["approx_qs_mean"]),
            _fmt(r["approx_td_mean"]),
        ]
        for r in frame.to_dict("records")
    ]
    lines += ["", _table(header, rows), "", "![escape_sde](plots/escape_sde.png)", ""]
    return "\n".join(lines)


def _sgd_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["sgd"]
    conf = settings["confidence"]
    lines = ["## 2. Escape of SGD from a sharp and a flat minimum", ""]
    mins = frame.drop_duplicates("minimum").set_index("minimum")
    desc = "; ".join(
        f"{name}: {mins.loc[name, 'found_by']}, L_min = {_fmt(mins.loc[name, 'loss_min'], 4)}, "
        f"|∇L| = {_fmt(mins.loc[name, 'grad_norm_min'], 2)}, λ_max = "
        f"{_fmt(mins.loc[name, 'lambda_max'], 3)}"
        for name in mins.index
    )
    lines.append(
        f"`{s['model']}` {s['model_kwargs']} on `{s['dataset']}` {s['dataset_kwargs']}, mean "
        f"squared error.  Minima ({desc}).  From each minimum and each (B, lr), with "
        f"`{s['optimizer']}`: one {s['noise_steps']}-step run with the NoiseCollector (exact "
        "reference every step) gives the noise's H (median over the recorded coordinates; "
        "'shuf.' = the same estimator on time-shuffled series, i.e. the no-memory value; "
        "'in basin' = fraction of its loss checks inside the basin: a crossing of the level is "
        "often temporary, so it can stay high although the first passage comes early), and "
        f"{s['runs']} runs (run r on minibatch stream r in every cell) give the escape time: "
        f"iterations until the full-data loss exceeds L_min + {s['delta']:g}, checked every "
        f"{s['check_every']} steps, censored at {s['max_steps']}.  lr·λ_max ≥ 2: the minimum is "
        "linearly unstable for that step size (gradient descent itself leaves it)."
    )
    # (i) flat vs sharp at equal (B, lr); (ii) escape against H
    pairs, dh, ratio = [], [], []
    for (b, lr), g in frame.groupby(["batch_size", "lr"], sort=True):
        rec = {r["minimum"]: r for r in g.to_dict("records")}
        if {"flat", "sharp"} <= set(rec):
            pairs.append(((b, lr), _compare(rec["flat"], rec["sharp"], conf)))
            dh.append(abs(rec["flat"]["hurst_whittle"] - rec["sharp"]["hurst_whittle"]))
            ratio.append(rec["flat"]["km_mean"] / rec["sharp"]["km_mean"])
    longer = sum(1 for _, c in pairs if c > 0)
    shorter = sum(1 for _, c in pairs if c < 0)
    censored_both = frame.groupby(["batch_size", "lr"]).mean_restricted.all().sum()
    h = frame["hurst_whittle"].to_numpy(dtype=float)
    m = frame["km_mean"].to_numpy(dtype=float)
    ok = np.isfinite(h) & np.isfinite(m)
    rho_all = (
        float(scipy.stats.spearmanr(h[ok], m[ok]).statistic)
        if ok.sum() >= 3 and np.ptp(m[ok]) > 0 and np.ptp(h[ok]) > 0
        else math.nan
    )
    within = []
    for name, g in frame.groupby("minimum", sort=False):
        hh, mm = g["hurst_whittle"].to_numpy(float), g["km_mean"].to_numpy(float)
        okk = np.isfinite(hh) & np.isfinite(mm)
        if okk.sum() >= 3 and np.ptp(mm[okk]) > 0 and np.ptp(hh[okk]) > 0:
            within.append(f"{name} {scipy.stats.spearmanr(hh[okk], mm[okk]).statistic:+.2f}")
    h_range = (np.nanmin(h), np.nanmax(h)) if np.isfinite(h).any() else (math.nan, math.nan)
    base = frame["hurst_whittle_shuffled"].to_numpy(float)
    lines += [
        "",
        f"**Flat against sharp:** at equal (B, lr) SGD stays longer in the flat minimum in "
        f"{longer} of {len(pairs)} cells and shorter in {shorter} (restricted means, z test at "
        f"{conf:.0%}; {int(censored_both)} cell(s) have censored runs from both minima)."
        f"  **Against H:** the noise's Whittle H ranges over [{_fmt(h_range[0])}, "
        f"{_fmt(h_range[1])}] (shuffled baseline ≈ {_fmt(np.nanmedian(base))}); Spearman "
        f"correlation of H with the escape time over all cells {_fmt(rho_all, 2)}"
        + (f", within a minimum {', '.join(within)}" if within else "")
        + (
            f"; at equal (B, lr) the two minima's H differ by at most {_fmt(np.nanmax(dh), 2)}, "
            f"while flat/sharp ratios of the mean escape time range over "
            f"[{_fmt(np.nanmin(ratio), 3)}, {_fmt(np.nanmax(ratio), 3)}] (censored means are "
            "lower bounds)"
            if pairs and np.isfinite(dh).any()
            else ""
        )
        + ".  "
        + _sgd_verdict(longer, shorter, len(pairs), rho_all)
        + "  The cells differ in B and lr, which move both H and the escape time, so a "
        "correlation across cells is not an effect of H on escape.",
    ]
    header = [
        "minimum",
        "λ_max",
        "B",
        "lr",
        "lr·λ_max",
        "H Whittle (shuf.)",
        "H DFA (shuf.)",
        "in basin",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
    ]
    rows = [
        [
            r["minimum"],
            _fmt(r["lambda_max"]),
            str(int(r["batch_size"])),
            f"{r['lr']:g}",
            _fmt(r["lr_lambda"], 2),
            f"{_fmt(r['hurst_whittle'])} ({_fmt(r['hurst_whittle_shuffled'])})",
            f"{_fmt(r['hurst_dfa'])} ({_fmt(r['hurst_dfa_shuffled'])})",
            _pct(r["noise_in_basin"]),
            _pct(r["censored_fraction"]),
            _mean_cell(r),
            _median_cell(r),
        ]
        for r in frame.to_dict("records")
    ]
    lines += ["", _table(header, rows), "", "![escape_sgd_hurst](plots/escape_sgd_hurst.png)", ""]
    return "\n".join(lines)


def _sgd_verdict(longer: int, shorter: int, n: int, rho: float) -> str:
    if not n:
        flat = "flat and sharp could not be compared"
    elif longer > shorter:
        flat = "SGD stays longer in the flat minimum"
    elif shorter > longer:
        flat = "SGD leaves the flat minimum sooner than the sharp one"
    else:
        flat = "no significant difference between the flat and the sharp minimum"
    if not math.isfinite(rho):
        mem = "the link to H cannot be read off these cells"
    elif rho > 0.3:
        mem = "cells with larger H tend to keep SGD longer, as the claim has it"
    elif rho < -0.3:
        mem = "cells with larger H tend to lose SGD sooner, against the claim"
    else:
        mem = "escape time and H are not clearly related"
    return f"**Verdict:** {flat}; {mem}."


def _saddle_section(frame: pd.DataFrame, settings: dict) -> str:
    s = settings["saddle"]
    conf = settings["confidence"]
    r0 = frame.iloc[0]
    lines = ["## 3. Escape from a strict saddle: SGD, SAM, StableSAM", ""]
    lines.append(
        f"Two-layer {s['activation']} network without biases (width {s['width']}) on "
        f"`{s['dataset']}` {s['dataset_kwargs']}, mean squared error.  At w = 0: loss "
        f"{_fmt(r0['loss_saddle'], 4)}; dense Hessian eigenvalues in "
        f"[{_fmt(r0['hessian_lambda_min'], 4)}, {_fmt(r0['hessian_lambda_max'], 4)}], "
        f"{int(r0['hessian_n_negative'])} of {int(r0['hessian_n_params'])} negative (Lanczos, "
        f"`which='LA'`: λ_max {_fmt(r0['lanczos_lambda_max'], 4)}, smallest Ritz value "
        f"{_fmt(r0['lanczos_min_ritz'], 4)}): a strict saddle.  Every run starts at the same "
        f"w0 = w = 0 + N(0, {s['perturbation']:g}²) per weight (loss {_fmt(r0['start_loss'], 4)});"
        f" lr = {s['lr']:g}; {s['runs']} runs per configuration (run r on minibatch stream r); "
        f"escape = first check with loss ≤ L(0) - {s['delta']:g}, checked every "
        f"{s['check_every']} step(s), censored at {s['max_steps']}.  SAM-type optimizers use "
        "SGD (momentum 0) or heavy ball (0.9) as base."
    )
    recs = frame.to_dict("records")
    sgd_rows = {(r["momentum"], r["batch_size"]): r for r in recs if r["optimizer"] == "sgd"}
    slower = faster = same = 0
    stuck = []
    ratios: dict[tuple, float] = {}
    bounds: set[tuple] = set()  # ratios that are lower bounds (SAM censored, SGD not)
    for r in recs:
        if r["optimizer"] == "sgd":
            continue
        ref = sgd_rows.get((r["momentum"], r["batch_size"]))
        if ref is None:
            continue
        c = _compare(r, ref, conf)
        slower += c > 0
        faster += c < 0
        same += c == 0
        key = (r["optimizer"], r["rho"], r["momentum"], r["batch_size"])
        ratios[key] = float(r["km_mean"]) / float(ref["km_mean"])
        if bool(r["mean_restricted"]) and not bool(ref["mean_restricted"]):
            bounds.add(key)
        if r["censored_fraction"] == 1.0:
            stuck.append(
                f"{r['optimizer']} rho={r['rho']:g} momentum {r['momentum']:g} B={r['batch_size']}"
            )
    n = slower + faster + same
    by_rho = []
    for rho in sorted({r["rho"] for r in recs if r["optimizer"] != "sgd"}):
        rs = [v for k, v in ratios.items() if k[1] == rho]
        by_rho.append(f"rho = {rho:g}: median ratio {_fmt(np.median(rs), 3)}")
    mitig_text, mitig = _mitigation(frame, conf)
    helps = [f for f, (h, hurt, _) in mitig.items() if h > hurt]
    verdict = (
        f"**SAM against SGD:** slower to escape in {slower} of {n} SAM-type configurations, "
        f"faster in {faster}, no significant difference in {same} (restricted means at equal "
        f"momentum and B, z test at {conf:.0%}; SAM-type mean / SGD mean by radius: "
        f"{'; '.join(by_rho)})"
        + (f"; never escaped within the horizon: {', '.join(stuck)}" if stuck else "")
        + ".  "
        + mitig_text
        + "  **Verdict on Kim et al.:** "
        + (
            "SAM-type optimizers escape this saddle more slowly than SGD"
            + (" in every configuration" if slower == n else " in most configurations")
            if n and slower > n / 2
            else "SAM-type optimizers do not escape this saddle more slowly than SGD in most "
            "configurations"
        )
        + "; "
        + (
            "momentum and batch size were not varied, so their effect is not tested"
            if not mitig
            else f"{' and '.join(helps)} mitigate{'s' if len(helps) == 1 else ''} the slowdown"
            if helps
            else "neither momentum nor the larger batch mitigates the slowdown here"
        )
        + ".  (Why a radius matters: near w = 0 SAM's ascent step rho g/|g| has length rho "
        "however small g is, and the gradient at w + e then points back to the saddle along "
        "the squared curvature, so the saddle attracts SAM until |w| is comparable with rho.)"
    )
    lines += ["", verdict]
    header = [
        "optimizer",
        "rho",
        "momentum",
        "B",
        "censored",
        f"KM mean [{conf:.0%} CI]",
        "KM median [CI]",
        "mean / SGD's",
    ]
    rows = []
    for r in recs:
        key = (r["optimizer"], r["rho"], r["momentum"], r["batch_size"])
        rows.append(
            [
                r["optimizer"],
                _fmt(r["rho"]),
                f"{r['momentum']:g}",
                str(int(r["batch_size"])),
                _pct(r["censored_fraction"]),
                _mean_cell(r),
                _median_cell(r),
                ("≥ " if key in bounds else "") + _fmt(ratios.get(key), 3)
                if r["optimizer"] != "sgd"
                else "1",
            ]
        )
    lines += [
        "",
        _table(header, rows),
        "",
        "![escape_saddle_survival](plots/escape_saddle_survival.png)",
        "",
    ]
    return "\n".join(lines)


def _mitigation(frame: pd.DataFrame, conf: float) -> tuple[str, dict]:
    """Do momentum and a larger batch shorten SAM's escape?  Counted over SAM-type rows.

    Returns the sentence and ``{"momentum" | "the larger batch": (shortens, lengthens, pairs)}``.
    """
    sam = frame[frame.optimizer != "sgd"]
    out, counts = [], {}
    for factor, others in (("momentum", "batch_size"), ("batch_size", "momentum")):
        values = sorted(sam[factor].unique())
        if len(values) < 2:
            continue
        lo, hi = values[0], values[-1]
        helps = hurts = total = 0
        for _, g in sam.groupby(["optimizer", "rho", others], dropna=False):
            a = g[g[factor] == hi].to_dict("records")
            b = g[g[factor] == lo].to_dict("records")
            if a and b:
                c = _compare(a[0], b[0], conf)
                helps += c < 0
                hurts += c > 0
                total += 1
        label = "momentum" if factor == "momentum" else "the larger batch"
        what = f"{hi:g} instead of {lo:g}" if factor == "momentum" else f"B={hi:g} vs B={lo:g}"
        counts[label] = (helps, hurts, total)
        out.append(
            f"{label} ({what}) shortens SAM-type escape in {helps} of {total} comparisons and "
            f"lengthens it in {hurts}"
        )
    if not out:
        return "", counts
    return "**Mitigation:** " + "; ".join(out) + ".", counts


_SECTIONS = {"sde": _sde_section, "sgd": _sgd_section, "saddle": _saddle_section}


# ============================================================================ plots
def _plots(part: str, frame: pd.DataFrame, times: pd.DataFrame | None, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    if part == "sde":
        scalings = list(dict.fromkeys(frame.scaling))
        fig, axes = plt.subplots(
            1, len(scalings), figsize=(5 * len(scalings), 4), constrained_layout=True, squeeze=False
        )
        for ax, scaling in zip(axes[0], scalings, strict=True):
            for well, color in (("flat", "tab:blue"), ("sharp", "tab:red")):
                g = frame[(frame.scaling == scaling) & (frame.well == well)].sort_values("hurst")
                yerr = [g.km_mean - g.km_mean_low, g.km_mean_high - g.km_mean]
                ax.errorbar(
                    g.hurst,
                    g.km_mean,
                    yerr=yerr,
                    color=color,
                    marker="o",
                    capsize=3,
                    label=f"{well} (U''={g.curvature.iloc[0]:g}): KM mean",
                )
                ax.plot(
                    g.hurst,
                    g.approx_qs_restricted,
                    color=color,
                    ls="--",
                    lw=1,
                    label=f"{well}: quasi-stationary approx. (restricted)",
                )
                cens = g[g.mean_restricted]
                ax.scatter(
                    cens.hurst, cens.km_mean, facecolors="none", edgecolors="k", s=80, zorder=3
                )
            ax.set_yscale("log")
            ax.set_xlabel("Hurst exponent H")
            ax.set_ylabel("mean escape time (restricted to the horizon)")
            ax.set_title(f"SDE, '{scaling}' scaling (circled: censored paths)")
            ax.legend(fontsize=7)
        fig.savefig(folder / "escape_sde.png", dpi=110)
        plt.close(fig)
    elif part == "sgd":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        for ax, est in zip(axes, ("whittle", "dfa"), strict=True):
            stacked = 0  # censored cells share the top: stack their labels
            for name, marker in (("sharp", "^"), ("flat", "o")):
                g = frame[frame.minimum == name]
                for r in g.to_dict("records"):
                    face = "none" if r["mean_restricted"] else None
                    ax.errorbar(
                        r[f"hurst_{est}"],
                        r["km_mean"],
                        yerr=[
                            [r["km_mean"] - r["km_mean_low"]],
                            [r["km_mean_high"] - r["km_mean"]],
                        ],
                        marker=marker,
                        capsize=3,
                        mfc=face,
                        color="tab:red" if name == "sharp" else "tab:blue",
                    )
                    rise = 3
                    if r["mean_restricted"]:
                        rise = -8 - 7 * stacked
                        stacked += 1
                    ax.annotate(
                        f"{name} B={r['batch_size']}, lr={r['lr']:g}",
                        (r[f"hurst_{est}"], r["km_mean"]),
                        fontsize=6,
                        xytext=(4, rise),
                        textcoords="offset points",
                    )
            ax.axvline(
                float(np.nanmedian(frame[f"hurst_{est}_shuffled"])), color="grey", ls=":", lw=1
            )
            ax.set_yscale("log")
            ax.set_xlabel(f"H of the SGD noise ({est}; dotted: shuffled baseline)")
            ax.set_ylabel("mean escape time, iterations (restricted)")
            ax.set_title("SGD: sharp ▲ red, flat ● blue (open: censored runs)", fontsize=9)
        fig.savefig(folder / "escape_sgd_hurst.png", dpi=110)
        plt.close(fig)
    elif part == "saddle" and times is not None:
        optimizers = list(dict.fromkeys(frame.optimizer))
        fig, axes = plt.subplots(
            1,
            len(optimizers),
            figsize=(4.5 * len(optimizers), 3.8),
            constrained_layout=True,
            squeeze=False,
            sharey=True,
        )
        horizon = float(frame.horizon.iloc[0])
        first = float(frame.check_every.iloc[0])
        styles = ["-", "--", ":", "-."]
        rhos = sorted(times.rho.dropna().unique())
        combos = sorted({(m, b) for m, b in zip(times.momentum, times.batch_size, strict=True)})
        for ax, opt in zip(axes[0], optimizers, strict=True):
            g = times[times.optimizer == opt]
            keys = ["momentum", "batch_size", "rho"]
            for (mom, b, rho), part in g.groupby(keys, dropna=False, sort=True):
                km = sgn.kaplan_meier(part.time.to_numpy(), part.escaped.to_numpy())
                # from the first possible exit (log axis), flat after the last exit
                t = np.concatenate([[first], km.time, [horizon]])
                y = np.concatenate([[1.0], km.survival, [km.survival[-1] if km.time.size else 1.0]])
                ls = "-" if math.isnan(rho) else styles[rhos.index(rho) % len(styles)]
                label = f"momentum {mom:g}, B={b}" + ("" if math.isnan(rho) else f", rho={rho:g}")
                color = f"C{combos.index((mom, b)) % 10}"
                ax.step(t, y, where="post", ls=ls, color=color, label=label)
            ax.set_xscale("log")
            ax.set_xlabel("iterations (censored at the right end)")
            ax.set_title(opt)
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("P(not yet escaped)  (Kaplan-Meier)")
        fig.savefig(folder / "escape_saddle_survival.png", dpi=110)
        plt.close(fig)


# ============================================================================ files
_PLOTS = {
    "sde": "escape_sde.png",
    "sgd": "escape_sgd_hurst.png",
    "saddle": "escape_saddle_survival.png",
}


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(_tmp(path), index=False, float_format="%.8g")
    os.replace(_tmp(path), path)


def _save_part(out: Path, part: str, digest: str, table: pd.DataFrame, times):
    """Write the per-run times (final) and the table (to its temporary name: the caller moves it
    into place last, which marks the part as done); return both as read back from disk, so that
    tables and plots are rendered from exactly what a rerun will read."""
    if times is not None:
        times = times.assign(settings_hash=digest)
        _write_csv(times, out / f"{part}_escape_times.csv")
        times = pd.read_csv(out / f"{part}_escape_times.csv")
    table = table.assign(settings_hash=digest)
    table.to_csv(_tmp(out / f"{part}_escape.csv"), index=False, float_format="%.8g")
    return pd.read_csv(_tmp(out / f"{part}_escape.csv")), times


def _write_text(path: Path, text: str) -> bool:
    """Write atomically, only when the content changes; True if written."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    _tmp(path).write_text(text)
    os.replace(_tmp(path), path)
    return True


def _load_part(out: Path, part: str, digest: str):
    """The part's table (and per-run times) if on disk for these settings; else (None, None)."""
    table_path = out / f"{part}_escape.csv"
    times_path = out / f"{part}_escape_times.csv"
    try:
        table = pd.read_csv(table_path)
    except (OSError, ValueError):
        return None, None
    if table.empty or "settings_hash" not in table or not (table.settings_hash == digest).all():
        return None, None
    times = None
    if part != "sde":
        try:
            times = pd.read_csv(times_path)
        except (OSError, ValueError):
            return None, None
        if "settings_hash" not in times or not (times.settings_hash == digest).all():
            return None, None
    return table, times


def run_escape(
    config: dict,
    out: Path,
    *,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, int]:
    """Run the escape-time experiments of a configuration; skip parts already done.

    Parameters
    ----------
    config : dict
        The parsed TOML file: ``kind = "escape"`` and an ``[escape]`` table (schema and
        defaults: :data:`ESCAPE_DEFAULTS`; see :func:`resolve_settings`).
    out : pathlib.Path
        Output folder (created).  See the module docstring for its content.
    device : str
        Torch device of the network parts ("cpu", "cuda", "auto").
    progress : bool
        Log a line per cell (besides one per part).
    log : callable
        Receives the progress lines.

    Returns
    -------
    dict
        ``{"done": ..., "skipped": ..., "failed": ...}``: parts computed now, parts found on disk
        with the same settings hash, parts that raised (their traceback is logged; the others
        still run).

    Raises
    ------
    ConfigError
        (a ``ValueError``) For an invalid configuration, before anything runs.

    Notes
    -----
    Each part writes its CSV atomically (temporary file, then ``os.replace``), with a
    ``settings_hash`` column: the hash of the part's settings, the seed, the confidence level,
    ``n_bootstrap`` and this module's version.  A rerun skips a part whose CSV carries the
    current hash and leaves its files untouched; ``escape.md`` and ``escape_settings.json`` are
    rewritten only when their content changes.
    """
    settings = resolve_settings(config)
    threads = torch.get_num_threads()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    try:
        return _run_parts(settings, Path(out), device=device, progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)


def _run_parts(settings: dict, out: Path, *, device: str, progress: bool, log) -> dict[str, int]:
    """:func:`run_escape` after validation."""
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    hashes = {part: _part_hash(settings, part) for part in PARTS}
    _write_text(
        out / "escape_settings.json",
        json.dumps({"settings": settings, "settings_hash": hashes}, indent=2, sort_keys=True)
        + "\n",
    )
    counts = {"done": 0, "skipped": 0, "failed": 0}
    results: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {}
    failures: dict[str, str] = {}
    for part in [p for p in PARTS if p in settings["parts"]]:
        digest = hashes[part]
        table, times = _load_part(out, part, digest)
        if table is not None:
            counts["skipped"] += 1
            log(f"{part}: already done ({out / f'{part}_escape.csv'}), skipped")
            results[part] = (table, times)
            continue
        log(f"{part}: running")
        t0 = time.perf_counter()
        try:
            with torch.random.fork_rng(devices=[]):
                if part == "sde":
                    result = _run_sde(settings, out, log, progress)
                elif part == "sgd":
                    result = _run_sgd(settings, out, log, progress, dev)
                else:
                    result = _run_saddle(settings, out, log, progress, dev)
            table, times = _save_part(out, part, digest, result["table"], result.get("times"))
            _plots(part, table, times, out / "plots")
            _write_text(out / f"{part}_escape.md", _SECTIONS[part](table, settings))
            os.replace(_tmp(out / f"{part}_escape.csv"), out / f"{part}_escape.csv")
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one failed part does not stop the others
            counts["failed"] += 1
            failures[part] = f"{type(err).__name__}: {err}"
            log(f"{part}: FAILED: {failures[part]}\n{traceback.format_exc()}")
            continue
        counts["done"] += 1
        results[part] = (table, times)
        log(f"{part}: done in {time.perf_counter() - t0:.0f} s")
    for part, (table, times) in results.items():
        # a part whose files were deleted by hand gets them back (no recomputation)
        if not (out / f"{part}_escape.md").exists():
            _write_text(out / f"{part}_escape.md", _SECTIONS[part](table, settings))
        if not (out / "plots" / _PLOTS[part]).exists():
            _plots(part, table, times, out / "plots")
    _write_text(out / "escape.md", _summary(settings, results, failures))
    return counts


def _summary(settings: dict, results: dict, failures: dict) -> str:
    lines = [
        "# Escape times: SDE model, SGD at sharp and flat minima, SAM at a saddle",
        "",
        "Claims tested: (1) Tan, Zhang & Liu (arXiv:2105.02062): SGD stays longer in flat minima "
        "when the Hurst exponent H of its noise is larger; (2) Kim et al. (arXiv:2301.06308): "
        "SAM escapes saddle points more slowly than SGD, and momentum and the batch size "
        "mitigate this.  Escape statistics: Kaplan-Meier over independent runs "
        "(`sgn_memory.escape_times`); every mean is restricted to the horizon, '≥' where runs "
        f"were censored; intervals at {settings['confidence']:.0%}.  Settings: "
        "`escape_settings.json`; per-run times: `*_escape_times.csv`.",
        "",
    ]
    for part in PARTS:
        if part not in settings["parts"]:
            continue
        if part in results:
            lines.append(_SECTIONS[part](results[part][0], settings))
        else:
            reason = failures.get(part, "not run")
            lines += [f"## {part}", "", f"No result for these settings ({reason}).", ""]
    return "\n".join(lines)
