"""Experiment configurations: TOML files (or the named presets) expanded into runs.

A configuration is one TOML file::

    name = "quick"                     # the sweep's name (default: the file's stem)
    seeds = [0, 1, 2]                  # every run of every group is repeated per seed
    out = "runs/quick"                 # default output folder (``--out`` overrides it)
    threads = 1                        # torch CPU threads (optional; ``--threads`` overrides)

    [defaults]                         # settings every run starts from (see RUN_DEFAULTS)
    dataset = "mnist1d"
    model = "mlp"
    steps = 1500

    [[group]]                          # a group: a grid over settings, on top of the defaults
    name = "architectures"
    model = ["mlp", "lenet5"]          # a list is a grid axis; scalars are fixed settings
    lr = 0.05

    [[group]]
    name = "batch_lr"
    grid = { batch_size = [16, 64], lr = [0.02, 0.1] }   # the same, spelled explicitly
    [[group.variant]]                  # or explicit variants (each a table of settings)
    optimizer = "sam"
    rho = 0.05

A setting whose *value* is itself a list (``probe_at``, ``dataset_kwargs``...) is written inside
``grid`` as a list of lists when it varies, or as ``fixed = {probe_at = [500, 1000]}``.
Every run gets a stable identifier from its settings (``group/model-dataset-...-s<seed>-<hash>``)
and the hash of its full settings decides, on a rerun, whether its finished result still holds.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parent / "presets"

#: Settings of one run and their defaults.  ``None`` means "derived" (see the comments).
RUN_DEFAULTS: dict[str, Any] = {
    # data and model
    "dataset": "mnist1d",
    "dataset_kwargs": {},
    "model": "mlp",
    "model_kwargs": {},
    # training
    "optimizer": "sgd",  # sgd, momentum, adam, adamw, sam, stablesam
    "optimizer_kwargs": {},  # e.g. {base = "sgd"} for SAM
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "rho": 0.05,
    "batch_size": 32,
    "steps": 2000,
    # minibatch sampling, in training and in the probes: "epoch" (a fresh permutation per epoch,
    # batches without replacement: what training loops do) or "iid" (every batch an independent
    # draw of B distinct samples: no epoch structure; the no-memory control)
    "sampling": "epoch",
    # trajectory collection (NoiseCollector)
    "coordinates": 2000,  # recorded coordinates (capped at the model's size)
    "reference": "exact",  # exact, batch, none
    "reference_samples": None,  # training samples in the exact reference (None: all of them)
    "reference_batch": 1024,  # batch size of the reference passes
    "every": 1,  # record every n-th step
    "record_from": 0,  # start recording at this step (skip the initial transient)
    # frozen-checkpoint probes (probe_checkpoint) at these steps (after the step); [] for none
    "probe_at": [],
    "probe_batches": 1000,
    # sharpness: top Hessian eigenvalue at the end (and at each probe)
    "sharpness": True,
    "sharpness_samples": 1000,
    "sharpness_iters": 30,
    # analysis (sgn_memory.analyze)
    "max_coords": 2000,
    "stable_test": False,
    "evaluate_samples": None,  # test samples for the final accuracy (None: all)
}

#: Settings added after sweeps had run, with the value that reproduces what ran before them.
_ADDED_LATER: dict[str, Any] = {"sampling": "epoch"}
_MISSING = object()

_GROUP_KEYS = {"name", "grid", "fixed", "variant"}
_TOP_KEYS = {"name", "kind", "seeds", "out", "threads", "defaults", "group", "description"}


class ConfigError(ValueError):
    """A configuration file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class RunSpec:
    """One run: its group, seed and complete settings."""

    group: str
    seed: int
    settings: dict[str, Any] = field(hash=False)

    @property
    def spec_hash(self) -> str:
        """Hash of everything that decides the run's result (group name excluded).  Settings
        added after results existed are left out while they hold the value that reproduces the
        old behaviour (:data:`_ADDED_LATER`), so finished runs stay valid."""
        settings = {k: v for k, v in self.settings.items() if _ADDED_LATER.get(k, _MISSING) != v}
        blob = json.dumps({"seed": self.seed, **settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        s = self.settings
        parts = [s["model"], s["dataset"], s["optimizer"], f"b{s['batch_size']}", f"lr{s['lr']:g}"]
        if s["weight_decay"]:
            parts.append(f"wd{s['weight_decay']:g}")
        if s["optimizer"] in ("sam", "stablesam"):
            parts.append(f"rho{s['rho']:g}")
        if s.get("sampling", "epoch") != "epoch":
            parts.append(s["sampling"])
        parts.append(f"s{self.seed}")
        return f"{self.group}/{'-'.join(parts)}-{self.spec_hash}"


@dataclass(frozen=True)
class Config:
    name: str
    source: str
    seeds: tuple[int, ...]
    out: str
    description: str
    runs: tuple[RunSpec, ...]
    threads: int | None = None  # torch CPU threads (``--threads`` overrides)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.runs))


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A preset name (``quick``, ``paper``...) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such configuration file.")
        return path
    preset = PRESETS_DIR / f"{name_or_path}.toml"
    if not preset.is_file():
        raise ConfigError(
            f"{name_or_path!r} is neither a TOML file nor a preset; presets: "
            f"{', '.join(preset_names())}."
        )
    return preset


def parse_override(text: str) -> tuple[str, Any]:
    """``"steps=500"`` or ``"probe_at=[100, 200]"`` (a TOML value) -> (key, value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in RUN_DEFAULTS:
        raise ConfigError(
            f"--set takes KEY=VALUE with KEY one of {sorted(RUN_DEFAULTS)}; got {text!r}."
        )
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()  # a bare word: a string


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a configuration; expand its groups into runs.

    ``overrides`` (from ``--set KEY=VALUE``) replace a setting in every run, after the groups.
    """
    overrides = _check_settings(dict(overrides or {}), "--set")
    path = resolve(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err}).") from None
    if raw.get("kind", "training") != "training":
        raise ConfigError(f"{path}: kind = {raw['kind']!r} is not a training sweep.")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}."
        )
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{path}: seeds must be a non-empty list of integers.")
    defaults = copy.deepcopy(RUN_DEFAULTS)
    defaults.update(_check_settings(raw.get("defaults", {}), f"{path} [defaults]"))
    groups = raw.get("group", [{"name": "main"}])
    runs = []
    for i, group in enumerate(groups):
        where = f"{path} [[group]] #{i + 1}"
        name = group.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{where}: every group needs a name (letters, digits, _).")
        for settings in _expand_group(group, defaults, where):
            settings.update(copy.deepcopy(overrides))
            for seed in seeds:
                runs.append(RunSpec(name, int(seed), settings))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"{path}: two runs have identical settings ({dup}).")
    return Config(
        name=raw.get("name", path.stem),
        source=str(path),
        seeds=tuple(seeds),
        out=raw.get("out", f"runs/{raw.get('name', path.stem)}"),
        description=raw.get("description", ""),
        runs=tuple(runs),
        threads=raw.get("threads"),
    )


def _check_settings(table: dict, where: str) -> dict:
    unknown = set(table) - set(RUN_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(RUN_DEFAULTS)}."
        )
    return dict(table)


def _expand_group(group: dict, defaults: dict, where: str) -> list[dict]:
    axes: dict[str, list] = {}
    fixed: dict[str, Any] = {}
    for key, value in group.items():
        if key in _GROUP_KEYS:
            continue
        _check_settings({key: value}, where)
        if isinstance(value, list) and not isinstance(RUN_DEFAULTS[key], list):
            axes[key] = value
        else:
            fixed[key] = value
    grid = group.get("grid", {})
    fixed.update(_check_settings(group.get("fixed", {}), f"{where} fixed"))
    for key, values in _check_settings(grid, f"{where} grid").items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid.{key} must be a non-empty list.")
        axes[key] = values
    variants = group.get("variant", [{}])
    if not isinstance(variants, list):
        raise ConfigError(f"{where}: variant must be an array of tables ([[group.variant]]).")
    out = []
    for variant in variants:
        variant = _check_settings(variant, f"{where} variant")
        for combo in itertools.product(*axes.values()):
            settings = copy.deepcopy(defaults)
            settings.update(copy.deepcopy(fixed))
            settings.update(dict(zip(axes, combo, strict=True)))
            settings.update(copy.deepcopy(variant))
            out.append(settings)
    return out
