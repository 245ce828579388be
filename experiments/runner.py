"""One run of an experiment, and a resumable sweep over many.

A run trains a model with the :class:`~sgn_memory.collect.NoiseCollector` attached (the
*trajectory* store), saves the weights at the ``probe_at`` steps and afterwards runs the
frozen-checkpoint protocol on each (:func:`~sgn_memory.collect.probe_checkpoint`, one store per
checkpoint), measures the sharpness (top Hessian eigenvalue) of the final weights and of every
probed checkpoint, evaluates the model, analyses every store with :func:`sgn_memory.analyze`
(report folder per run) and writes ``result.json`` last.  A sweep skips runs whose
``result.json`` carries the same settings hash and redoes every other (a killed run is redone
from scratch: its folder is removed first); ``force`` redoes finished runs without losing one
whose replacement does not finish (see :func:`run_sweep`).

Folder of a sweep::

    OUT/sweep.json                        the configuration as run (settings of every run)
    OUT/runs/<group>/<run-id>/            trajectory/  probe-step001500/  report/  result.json
    OUT/results.csv  results.md  plots/   the tables across runs (see :mod:`experiments.tables`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import SAMPLINGS, Config, ConfigError, RunSpec
from .data import DataSpec, full_batches, load_dataset, minibatches
from .models import build_model, count_parameters
from .optim import make_optimizer, training_step
from .sharpness import top_hessian_eigenvalue

RESULT = "result.json"
FAILED = "failed.json"


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"``: the first CUDA device when there is one, else the CPU.

    Raises
    ------
    ConfigError
        For a name torch does not know, a device type the experiments do not run on, or a
        device this machine does not have (before any work starts).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"device {name!r} is not a device name; use auto, cpu, cuda, cuda:N or mps."
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use cpu or auto."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0."
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device {name!r}: MPS is not available on this machine.")
    elif device.type != "cpu":
        raise ConfigError(f"device {name!r}: the experiments run on cpu, cuda or mps only.")
    return device


def iid_batches(spec: DataSpec, batch_size: int, *, generator, count: int):
    """``count`` batches, each B distinct samples drawn independently of every other batch."""
    for _ in range(count):
        index = torch.randperm(spec.n_train, generator=generator)[:batch_size]
        yield spec.x_train[index], spec.y_train[index]


class Shuffled:
    """Re-iterable minibatches of exactly ``batch_size`` from one seeded generator: each
    ``iter()`` is a new epoch (``sampling="epoch"``: a permutation, batches without replacement)
    or as many independent batches (``"iid"``).  The probe cycles through it."""

    def __init__(self, spec: DataSpec, batch_size: int, seed: int, sampling: str = "epoch"):
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}.")
        self.spec, self.batch_size, self.sampling = spec, batch_size, sampling
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.sampling == "iid":
            n = self.spec.n_train // self.batch_size
            return iid_batches(self.spec, self.batch_size, generator=self.generator, count=n)
        return minibatches(self.spec, self.batch_size, generator=self.generator)


def _to(spec: DataSpec, device: torch.device) -> DataSpec:
    if device.type == "cpu":
        return spec
    return dataclasses.replace(
        spec,
        x_train=spec.x_train.to(device),
        y_train=spec.y_train.to(device),
        x_test=spec.x_test.to(device),
        y_test=spec.y_test.to(device),
    )


def _head(spec: DataSpec, n: int | None) -> DataSpec:
    return spec if n is None or n >= spec.n_train else spec.subset(int(n))


@torch.no_grad()
def evaluate(model, spec: DataSpec, loss_fn, *, split: str, limit: int | None = None) -> dict:
    """Mean loss and accuracy (classification, next-token) over a split, in eval mode."""
    was_training = model.training
    model.eval()
    total, correct, n, positions = 0.0, 0, 0, 0
    try:
        seen = 0
        for x, y in full_batches(spec, 1024, split=split):
            if limit is not None and seen >= limit:
                break
            if limit is not None:
                x, y = x[: limit - seen], y[: limit - seen]
            seen += len(x)
            out = model(x)
            total += float(loss_fn(out, y)) * len(x)
            n += len(x)
            if spec.task != "regression":
                correct += int((out.argmax(-1) == y).sum())
                positions += y.numel()
    finally:
        model.train(was_training)
    acc = correct / positions if positions else float("nan")
    return {f"{split}_loss": total / max(n, 1), f"{split}_accuracy": acc}


def run_one(spec: RunSpec, run_dir: Path, *, device: torch.device, progress=None) -> dict:
    """Train, record, probe, measure sharpness, analyse; return the result (also written)."""
    import sgn_memory as sgn
    from sgn_memory.collect import NoiseCollector, probe_checkpoint
    from sgn_memory.report import write_report

    s = spec.settings
    t_start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.seed)  # dropout masks of the run (the collector never touches it)
    data = load_dataset(s["dataset"], **s["dataset_kwargs"])
    data = _to(data, device)
    loss_fn = data.loss_fn()
    model = build_model(s["model"], data, seed=spec.seed, **s["model_kwargs"]).to(device)
    n_params = count_parameters(model)
    optimizer = make_optimizer(
        s["optimizer"],
        model.parameters(),
        lr=s["lr"],
        momentum=s["momentum"],
        weight_decay=s["weight_decay"],
        rho=s["rho"],
        **s["optimizer_kwargs"],
    )
    head = _head(data, s["reference_samples"])
    reference = list(full_batches(head, s["reference_batch"]))  # exact passes (and the probes)
    if s["reference"] == "batch":
        # a batch of M samples drawn afresh at every step (the collector's reference stream);
        # the list above would be taken one batch per step, repeating every N / M steps
        trajectory_reference = torch.utils.data.TensorDataset(head.x_train, head.y_train)
    else:
        trajectory_reference = reference
    k = min(int(s["coordinates"]), n_params)
    attrs = {
        "experiment": {"group": spec.group, "seed": spec.seed, "settings": s},
        "model": s["model"],
        "dataset": s["dataset"],
        "optimizer": s["optimizer"],
        "batch_size": s["batch_size"],
        "n_parameters": n_params,
    }
    epochs = _epochs(Shuffled(data, s["batch_size"], spec.seed, s["sampling"]))
    probe_steps = sorted({int(t) for t in s["probe_at"]})
    checkpoints: dict[int, dict] = {}
    collector = None
    losses = []
    diverged_at = None
    bar = _bar(progress, s["steps"], spec.run_id)
    try:
        for step in range(1, s["steps"] + 1):
            if step == s["record_from"] + 1:
                collector = NoiseCollector(
                    model,
                    optimizer,
                    run_dir / "trajectory",
                    coordinates=k,
                    reference=s["reference"],
                    reference_data=trajectory_reference,
                    reference_batch_size=s["reference_batch"],
                    reference_seed=spec.seed,
                    loss_fn=loss_fn,
                    every=s["every"],
                    batch_size=s["batch_size"],
                    seed=spec.seed,
                    attrs=attrs,
                    overwrite=True,
                )
            x, y = next(epochs)
            on_loss = collector.observe_loss if collector is not None else None
            loss = training_step(model, loss_fn, optimizer, x, y, on_loss=on_loss)
            losses.append(loss)
            if not math.isfinite(loss):
                diverged_at = step
                break
            if step in probe_steps:
                checkpoints[step] = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
            if bar is not None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.3g}")
    finally:
        if bar is not None:
            bar.close()
        if collector is not None:
            collector.close()
    if collector is not None and collector.error is not None:
        raise RuntimeError(f"the collector stopped recording: {collector.error}")
    train_seconds = time.perf_counter() - t_start

    result: dict[str, Any] = {
        "run_id": spec.run_id,
        "group": spec.group,
        "seed": spec.seed,
        "spec_hash": spec.spec_hash,
        "settings": s,
        "device": str(device),
        "n_parameters": n_params,
        "coordinates": k,
        "diverged_at": diverged_at,
        "final_minibatch_loss": float(np.mean(losses[-50:])) if losses else float("nan"),
        "train_seconds": train_seconds,
    }
    sharp_data = list(full_batches(_head(data, s["sharpness_samples"]), 1024))
    if diverged_at is None:
        result.update(evaluate(model, data, loss_fn, split="train", limit=s["evaluate_samples"]))
        result.update(evaluate(model, data, loss_fn, split="test", limit=s["evaluate_samples"]))
        if s["sharpness"]:
            sh = top_hessian_eigenvalue(
                model, loss_fn, sharp_data, max_iter=s["sharpness_iters"], seed=spec.seed
            )
            result["sharpness"] = sh.eigenvalue
            result["sharpness_converged"] = bool(sh.converged)

    # frozen-checkpoint probes, on a fresh copy of the model at each saved step
    stores = {"trajectory": run_dir / "trajectory"} if collector is not None else {}
    probes = {}
    for step, state in checkpoints.items():
        frozen = build_model(s["model"], data, seed=spec.seed, **s["model_kwargs"]).to(device)
        frozen.load_state_dict(state)
        name = f"probe-step{step:06d}"
        probe_checkpoint(
            frozen,
            loss_fn,
            Shuffled(data, s["batch_size"], seed=10_000 + spec.seed, sampling=s["sampling"]),
            n_batches=s["probe_batches"],
            store=run_dir / name,
            coordinates=k,
            reference_data=reference,
            seed=spec.seed,
            attrs={**attrs, "checkpoint_step": step},
            overwrite=True,
        )
        stores[name] = run_dir / name
        info = {"step": step}
        if s["sharpness"]:
            sh = top_hessian_eigenvalue(
                frozen, loss_fn, sharp_data, max_iter=s["sharpness_iters"], seed=spec.seed
            )
            info.update(sharpness=sh.eigenvalue, sharpness_converged=bool(sh.converged))
        probes[name] = info

    # analysis of every store of the run
    analyses = {}
    if stores:
        analysis = sgn.analyze(
            [str(p) for p in stores.values()],
            max_coords=s["max_coords"],
            seed=spec.seed,
            stable_test=s["stable_test"],
        )
        write_report(analysis, run_dir / "report", overwrite=True, plots=True)
        for name, row in zip(stores, analysis.runs.to_dict("records"), strict=True):
            row.update(_tan2021(stores[name], analysis, row["run"]))
            row.update(probes.get(name, {}))
            analyses[name] = row
    result["stores"] = analyses
    result["seconds"] = time.perf_counter() - t_start
    _write_json(run_dir / RESULT, result)
    return result


def _epochs(batches: Shuffled) -> Iterator:
    while True:
        yield from batches


def _tan2021(store_path: Path, analysis, run_name: str) -> dict:
    """The seed authors' statistic on the same series the analysis used: mean over series of
    the uncorrected R/S H with their windows, over series with 0.01 <= H <= 0.99."""
    import sgn_memory as sgn
    from sgn_memory.errors import DegenerateSeriesWarning, SgnMemoryError
    from sgn_memory.hurst import tan2021_mean_hurst
    from sgn_memory.store import NoiseStore

    series = analysis.series
    columns = np.sort(series.loc[series["run"] == run_name, "column"].to_numpy(dtype=int))
    store = NoiseStore.open(store_path)
    x = store.read_noise(coords=columns).T.astype(np.float64)
    try:
        with warnings.catch_warnings():  # constant series (dead units): NaN, counted below
            warnings.simplefilter("ignore", DegenerateSeriesWarning)
            est = sgn.hurst_rs(x, preset="tan2021")
    except SgnMemoryError as err:
        return {"tan2021_mean_hurst": float("nan"), "tan2021_note": str(err)}
    mean, kept = tan2021_mean_hurst(est.hurst)
    return {"tan2021_mean_hurst": mean, "tan2021_kept": kept}


def _jsonable(v):
    """JSON-ready copy: numpy scalars and arrays unwrapped, non-finite floats -> None."""
    if isinstance(v, dict):
        return {str(key): _jsonable(u) for key, u in v.items()}
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(u) for u in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Path):
        return str(v)
    return v


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _bar(progress, total, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc.split("/")[-1][:40], leave=False, file=sys.stderr)


def finished(spec: RunSpec, run_dir: Path) -> bool:
    """Whether the run's result is on disk for exactly these settings."""
    try:
        return json.loads((run_dir / RESULT).read_text()).get("spec_hash") == spec.spec_hash
    except (OSError, ValueError):
        return False


def _finished_twin(spec: RunSpec, out: Path) -> Path | None:
    """A finished run of another group with identical settings (the hash ignores the group)."""
    name = spec.run_id.split("/", 1)[1]
    for candidate in sorted((out / "runs").glob(f"*/{name}")):
        if candidate.parent.name != spec.group and finished(spec, candidate):
            return candidate
    return None


def _reuse(twin: Path, run_dir: Path, spec: RunSpec) -> None:
    tmp = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(twin, tmp)
        result = json.loads((tmp / RESULT).read_text())
        result.update(
            run_id=spec.run_id,
            group=spec.group,
            reused_from=str(twin.relative_to(twin.parent.parent)),
        )
        _write_json(tmp / RESULT, result)
        os.replace(tmp, run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# A finished run redone with ``force`` is set aside while its replacement is built in its place
# (in place, because the report names the stores by their paths), and put back unless the
# replacement finishes: a failed, interrupted or killed replacement leaves the old result as it
# was.  A folder set aside by a process killed outright is settled by the next sweep
# (:func:`_settle`).
_ASIDE = ".old-"


def _aside(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}{_ASIDE}{os.getpid()}")


@contextlib.contextmanager
def _replacing(run_dir: Path) -> Iterator[None]:
    aside = _aside(run_dir)
    os.replace(run_dir, aside)
    try:
        yield
    finally:
        _settle_one(aside, run_dir)


def _settle_one(aside: Path, run_dir: Path) -> None:
    """Keep the replacement if it finished (its result.json, written last, is there), else put
    the set-aside result back."""
    if (run_dir / RESULT).is_file():
        shutil.rmtree(aside)
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(aside, run_dir)


def _settle(out: Path) -> None:
    """Leftovers of a sweep killed outright: results set aside for a replacement (kept or put
    back) and half-copied reused runs (removed)."""
    for path in sorted((out / "runs").glob(f"*/.*{_ASIDE}*")):
        name = path.name[1:].rsplit(_ASIDE, 1)[0]
        _settle_one(path, path.with_name(name))
    for path in sorted((out / "runs").glob("*/.*.tmp-*")):
        if path.is_dir():
            shutil.rmtree(path)


def run_sweep(
    config: Config,
    out: Path,
    *,
    device: str = "auto",
    only: list[str] | None = None,
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run every run of ``config`` not yet finished; returns counts (done, skipped, reused,
    failed).

    A run killed half-way (no ``result.json``) or failed is redone from scratch in its folder.
    With ``force`` a finished run is redone too: its folder is set aside while the replacement
    is built in its place and put back, untouched, unless the replacement finishes (a failure
    record then goes next to it as ``failed.json``).  ``KeyboardInterrupt`` propagates after
    that; what it leaves is never taken for finished.
    """
    dev = pick_device(device)
    out.mkdir(parents=True, exist_ok=True)
    _settle(out)
    runs = [r for r in config.runs if not only or r.group in only]
    _write_json(
        out / "sweep.json",
        {
            "name": config.name,
            "source": config.source,
            "description": config.description,
            "runs": [
                {"run_id": r.run_id, "group": r.group, "seed": r.seed, "settings": r.settings}
                for r in config.runs
            ],
        },
    )
    if progress is None:
        progress = sys.stderr.isatty()
    counts = {"done": 0, "skipped": 0, "reused": 0, "failed": 0}
    for i, spec in enumerate(runs, 1):
        run_dir = out / "runs" / spec.run_id
        done = finished(spec, run_dir)
        if done and not force:
            counts["skipped"] += 1
            continue
        if not done and run_dir.exists():
            shutil.rmtree(run_dir)  # a run killed half-way, or one that failed: redo it all
        at = f"[{i}/{len(runs)}] {spec.run_id}"
        with _replacing(run_dir) if done else contextlib.nullcontext():
            failure = _run_or_reuse(spec, run_dir, out, dev, progress, at, counts, log)
        if failure is not None:
            counts["failed"] += 1
            kept = "; the earlier finished result is kept" if done else ""
            if done:  # the folder holds the earlier result again
                failure["kept"] = "result.json here is the earlier finished result, kept"
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / FAILED, failure)
            log(f"    FAILED: {failure['error']} (details in {run_dir / FAILED}){kept}")
    return counts


def _run_or_reuse(spec, run_dir, out, dev, progress, at, counts, log) -> dict | None:
    """Reuse a finished run of identical settings, or run it; count what was done.  Returns
    the failure record of a run that raised (one failed run does not stop the sweep)."""
    try:
        twin = _finished_twin(spec, out)
        if twin is not None:  # the same settings already ran in another group: reuse them
            _reuse(twin, run_dir, spec)
            counts["reused"] += 1
            log(f"{at}: same settings as {twin.parent.name}/{twin.name}, reused")
            return None
        log(f"{at} on {dev}")
        result = run_one(spec, run_dir, device=dev, progress=progress)
    except (KeyboardInterrupt, BrokenPipeError):  # the user stopped us, or our reader did
        raise
    except Exception as err:
        return {
            "run_id": spec.run_id,
            "error": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }
    counts["done"] += 1
    log(f"    {_one_line(result)}")
    return None


def _one_line(result: dict) -> str:
    parts = [f"{result['seconds']:.0f} s"]
    if result.get("test_accuracy") is not None and math.isfinite(result["test_accuracy"]):
        parts.append(f"test acc {result['test_accuracy']:.3f}")
    if result.get("sharpness") is not None:
        parts.append(f"sharpness {result['sharpness']:.3g}")
    for name, row in result["stores"].items():
        h = row.get("hurst_whittle_median")
        ex = row.get("hurst_whittle_excess")
        if h is not None:
            parts.append(f"{name}: H_whittle {h:.3f} (excess {ex:+.3f})")
    if result["diverged_at"]:
        parts.append(f"diverged at step {result['diverged_at']}")
    return "; ".join(parts)
