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
Every setting of every run is checked when the file is read, before anything runs: its type and
range, the names (datasets, models, optimizers...), the options each takes, the data files, the
probe steps against ``steps``; a :class:`ConfigError` names the file, the group and the key.
Every run gets a stable identifier from its settings (``group/model-dataset-...-s<seed>-<hash>``)
and the hash of its full settings decides, on a rerun, whether its finished result still holds.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Sequence
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

#: Minibatch sampling (:class:`experiments.runner.Shuffled`) and the reference of the
#: trajectory (:class:`sgn_memory.collect.NoiseCollector`).
SAMPLINGS = ("epoch", "iid")
REFERENCES = ("exact", "batch", "none")

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


def label(path: Path) -> str:
    """How messages name a configuration file: a preset by its file name, others as given."""
    return path.name if path.parent == PRESETS_DIR else str(path)


def read_toml(path: Path) -> dict:
    """The parsed file; a :class:`ConfigError` naming the file if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{label(path)}: not valid TOML ({err}).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label(path)}: not a text (UTF-8) file.") from None
    except OSError as err:
        raise ConfigError(f"{label(path)}: cannot be read ({err.strerror}).") from None


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
    Every run's settings are checked before anything runs (see :func:`_check_run`): a
    :class:`ConfigError` names the file, the group and the key.
    """
    overrides = _check_settings(dict(overrides or {}), "--set")
    path = resolve(name_or_path)
    name = label(path)
    raw = read_toml(path)
    if raw.get("kind", "training") != "training":
        raise ConfigError(f"{name}: kind = {raw['kind']!r} is not a training sweep.")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{name}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}."
        )
    seeds = raw.get("seeds", [0])
    if not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ConfigError(f"{name}: seeds = {seeds!r} must be a non-empty list of integers >= 0.")
    for key in ("name", "out", "description"):
        if key in raw and not (isinstance(raw[key], str) and (raw[key] or key == "description")):
            raise ConfigError(f"{name}: {key} = {raw[key]!r} must be a non-empty string.")
    threads = raw.get("threads")
    if threads is not None and _integer(1)(threads):
        raise ConfigError(f"{name}: threads = {threads!r} must be an integer >= 1.")
    defaults = copy.deepcopy(RUN_DEFAULTS)
    table = raw.get("defaults", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: [defaults] must be a table of settings.")
    defaults.update(_check_settings(table, f"{name} [defaults]"))
    groups = raw.get("group", [{"name": "main"}])
    if not isinstance(groups, list) or not groups:
        raise ConfigError(f"{name}: 'group' must be one or more [[group]] tables.")
    runs = []
    for i, group in enumerate(groups):
        where = f"{name}, group #{i + 1}"
        if not isinstance(group, dict):
            raise ConfigError(f"{where}: a group must be a table ([[group]]).")
        group_name = group.get("name")
        if not isinstance(group_name, str) or not group_name.isidentifier():
            raise ConfigError(f"{where}: every group needs a name (letters, digits, _).")
        where = f"{name}, group {group_name!r}"
        for settings in _expand_group(group, defaults, where):
            settings.update(copy.deepcopy(overrides))
            _check_run(settings, where)
            for seed in seeds:
                runs.append(RunSpec(group_name, int(seed), settings))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ConfigError(f"{name}: two runs have identical settings ({dup}).")
    return Config(
        name=raw.get("name", path.stem),
        source=str(path),
        seeds=tuple(seeds),
        out=raw.get("out", f"runs/{raw.get('name', path.stem)}"),
        description=raw.get("description", ""),
        runs=tuple(runs),
        threads=threads,
    )


# ------------------------------------------------------------------------------ checks


def _integer(low: int, *, optional: bool = False) -> Callable[[Any], str | None]:
    def check(value):
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"must be an integer >= {low}"
        return None

    return check


def _real(low: float, high: float = math.inf, *, open_low=False, open_high=True):
    def check(value):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        ok = ok and (value > low if open_low else value >= low)
        ok = ok and (value < high if open_high else value <= high)
        if ok:
            return None
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        if high == math.inf:
            return f"must be a number {'>' if open_low else '>='} {low:g}"
        return f"must be a number in {left}{low:g}, {high:g}{right}"

    return check


def _one_of(names: Callable[[], Sequence[str]]):
    def check(value):
        known = names()
        if isinstance(value, str) and value in known:
            return None
        return f"is not one of {', '.join(known)}"

    return check


def _flag(value):
    return None if isinstance(value, bool) else "must be true or false"


def _table(value):
    return None if isinstance(value, dict) else "must be a table, e.g. {name = value}"


def _steps(value):
    if isinstance(value, list) and all(_integer(1)(t) is None for t in value):
        return None
    return "must be a list of step numbers >= 1, e.g. [500, 1000]"


def _datasets():
    from .data import DATASETS

    return list(DATASETS)


def _models():
    from .models import MODELS

    return list(MODELS)


def _optimizers():
    from .optim import OPTIMIZERS

    return list(OPTIMIZERS)


#: The check of each setting on its own (combinations: :func:`_check_run`).
_RULES: dict[str, Callable[[Any], str | None]] = {
    "dataset": _one_of(_datasets),
    "dataset_kwargs": _table,
    "model": _one_of(_models),
    "model_kwargs": _table,
    "optimizer": _one_of(_optimizers),
    "optimizer_kwargs": _table,
    "lr": _real(0, open_low=True),
    "momentum": _real(0, 1),
    "weight_decay": _real(0),
    "rho": _real(0),
    "batch_size": _integer(1),
    "steps": _integer(1),
    "sampling": _one_of(lambda: SAMPLINGS),
    "coordinates": _integer(1),
    "reference": _one_of(lambda: REFERENCES),
    "reference_samples": _integer(1, optional=True),
    "reference_batch": _integer(1),
    "every": _integer(1),
    "record_from": _integer(0),
    "probe_at": _steps,
    "probe_batches": _integer(1),
    "sharpness": _flag,
    "sharpness_samples": _integer(1, optional=True),
    "sharpness_iters": _integer(1),
    "max_coords": _integer(1),
    "stable_test": _flag,
    "evaluate_samples": _integer(1, optional=True),
}


def _check_settings(table: dict, where: str) -> dict:
    """Known keys, each value valid on its own; ConfigError naming ``where`` and the key."""
    unknown = set(table) - set(RUN_DEFAULTS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(RUN_DEFAULTS)}."
        )
    for key, value in table.items():
        _check_value(key, value, where)
    return dict(table)


def _check_value(key: str, value: Any, where: str) -> None:
    problem = _RULES[key](value)
    if problem is not None:
        text = str(value).lower() if isinstance(value, bool) else repr(value)  # as in TOML
        shown = f"{key} {text}" if key in _NAMED else f"{key} = {text}"
        raise ConfigError(f"{where}: {shown} {problem}.")


_NAMED = {"dataset", "model", "optimizer", "sampling", "reference"}


def _check_run(settings: dict, where: str) -> None:
    """The settings of one run, together: the dataset can be found (files, package) and takes
    its options, the model takes the dataset's kind of data and its options, the optimizer its
    options, the probe steps lie within the run.  Each setting on its own was checked as it was
    read; this reads no data and builds nothing."""
    from sgn_memory.errors import SgnMemoryError

    from .data import check_dataset
    from .models import check_model
    from .optim import check_optimizer

    s = settings
    try:
        kind = check_dataset(s["dataset"], **s["dataset_kwargs"])
        check_model(s["model"], kind, **s["model_kwargs"])
        check_optimizer(s["optimizer"], **s["optimizer_kwargs"])
    except SgnMemoryError as err:
        raise ConfigError(f"{where}: {err}") from None
    beyond = [t for t in s["probe_at"] if t > s["steps"]]
    if beyond:
        raise ConfigError(
            f"{where}: probe_at = {s['probe_at']} has step(s) {beyond} beyond steps = "
            f"{s['steps']}; a probe is taken after one of the steps 1 to {s['steps']} (with "
            "--set steps=N, set probe_at too)."
        )
    if s["record_from"] >= s["steps"]:
        raise ConfigError(
            f"{where}: record_from = {s['record_from']} must be below steps = {s['steps']}, "
            "or the run records no trajectory."
        )


def _expand_group(group: dict, defaults: dict, where: str) -> list[dict]:
    axes: dict[str, list] = {}
    fixed: dict[str, Any] = {}
    for key, value in group.items():
        if key in _GROUP_KEYS:
            continue
        if key not in RUN_DEFAULTS:
            _check_settings({key: value}, where)  # names the unknown setting
        if isinstance(value, list) and not isinstance(RUN_DEFAULTS[key], list):
            axes[key] = _axis(key, value, where)
        else:
            _check_value(key, value, where)
            fixed[key] = value
    grid = group.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid must be a table of lists, e.g. grid = {{lr = [0.1]}}.")
    fixed_table = group.get("fixed", {})
    if not isinstance(fixed_table, dict):
        raise ConfigError(f"{where}: fixed must be a table of settings.")
    fixed.update(_check_settings(fixed_table, f"{where}, fixed"))
    unknown = set(grid) - set(RUN_DEFAULTS)
    if unknown:
        _check_settings({k: grid[k] for k in unknown}, f"{where}, grid")  # names them
    for key, values in grid.items():
        axes[key] = _axis(f"grid.{key}", values, where, key=key)
    variants = group.get("variant", [{}])
    if not (isinstance(variants, list) and variants and all(isinstance(v, dict) for v in variants)):
        raise ConfigError(f"{where}: variant must be an array of tables ([[group.variant]]).")
    out = []
    for j, variant in enumerate(variants):
        variant = _check_settings(variant, f"{where}, variant #{j + 1}")
        for combo in itertools.product(*axes.values()):
            settings = copy.deepcopy(defaults)
            settings.update(copy.deepcopy(fixed))
            settings.update(dict(zip(axes, combo, strict=True)))
            settings.update(copy.deepcopy(variant))
            out.append(settings)
    return out


def _axis(name: str, values: Any, where: str, *, key: str | None = None) -> list:
    """A grid axis: a non-empty list, each value valid for the setting."""
    key = key or name
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {name} must be a non-empty list of values.")
    for value in values:
        _check_value(key, value, where)
    return values
