"""The ``[escape]`` schema: defaults, validation, and the settings hash of each part."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from ..config import ConfigError

#: Bumped when a change of this package changes the numbers a part produces (invalidates results).
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
    for key in ("name", "out", "description"):
        if key in config and not isinstance(config[key], str):
            raise ConfigError(f"{key} = {config[key]!r} must be a string.")
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
    if isinstance(default, list) and default:  # every item like the default's items
        for item in value:
            _check_type(item, default[0], f"{where} item")


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
    _check_names(s)
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


def _check_names(s: dict) -> None:
    """The datasets, the model and the optimizer are known, take their options and fit."""
    from sgn_memory.errors import SgnMemoryError

    from ..data import check_dataset
    from ..models import check_model
    from ..optim import check_optimizer

    g, d = s["sgd"], s["saddle"]
    where = "[escape.sgd]"
    try:
        kind = check_dataset(g["dataset"], **g["dataset_kwargs"])
        check_model(g["model"], kind, **g["model_kwargs"])
        check_optimizer(g["optimizer"])
        where = "[escape.saddle]"
        kind = check_dataset(d["dataset"], **d["dataset_kwargs"])
    except SgnMemoryError as err:
        raise ConfigError(f"{where}: {err}") from None
    if kind != "regression":
        raise ConfigError(
            f"[escape.saddle]: dataset {d['dataset']!r} gives {kind} data; the saddle network "
            "needs regression data (teacher_student)."
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
