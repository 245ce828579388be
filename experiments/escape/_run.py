"""Running the parts: resume by settings hash, atomic CSV and text writes, :func:`run_escape`."""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ..runner import pick_device
from ._config import PARTS, _part_hash, resolve_settings
from ._plots import _PLOTS, _plots
from ._report import _SECTIONS, _summary
from ._saddle import _run_saddle
from ._sde import _run_sde
from ._sgd import _run_sgd


# ============================================================================ files
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
    force: bool = False,
) -> dict[str, int]:
    """Run the escape-time experiments of a configuration; skip parts already done (unless
    ``force``).

    Parameters
    ----------
    config : dict
        The parsed TOML file: ``kind = "escape"`` and an ``[escape]`` table (schema and
        defaults: :data:`ESCAPE_DEFAULTS`; see :func:`resolve_settings`).
    out : pathlib.Path
        Output folder (created).  See the package docstring (:mod:`experiments.escape`) for
        its content.
    device : str
        Torch device of the network parts ("cpu", "cuda", "auto").
    progress : bool
        Log a line per cell (besides one per part).
    log : callable
        Receives the progress lines.
    force : bool
        Redo every selected part, even one whose CSV carries the current settings hash.  A
        part is computed into a staging folder and moved into place only once complete, so a
        part that fails or is interrupted leaves the earlier files as they were.

    Returns
    -------
    dict
        ``{"done": ..., "skipped": ..., "failed": ...}``: parts computed now, parts found on disk
        with the same settings hash (none with ``force``), parts that raised (their traceback is
        logged; the others still run).

    Raises
    ------
    ConfigError
        (a ``ValueError``) For an invalid configuration, before anything runs.

    Notes
    -----
    Each part writes its CSV atomically (temporary file, then ``os.replace``), with a
    ``settings_hash`` column: the hash of the part's settings, the seed, the confidence level,
    ``n_bootstrap`` and this package's version.  A rerun skips a part whose CSV carries the
    current hash and leaves its files untouched; ``escape.md`` and ``escape_settings.json`` are
    rewritten only when their content changes.
    """
    settings = resolve_settings(config)
    threads = torch.get_num_threads()
    if config.get("threads"):
        torch.set_num_threads(config["threads"])
    try:
        return _run_parts(
            settings, Path(out), device=device, progress=progress, log=log, force=force
        )
    finally:
        torch.set_num_threads(threads)


# A part is computed into a staging folder beside its files (``OUT/.<part>.new-<pid>/``, the
# same layout), then moved into place with its table last: the table marks the part done, so an
# old result (with ``force``, or of other settings) stays whole until its replacement is
# complete, and a part that fails or is interrupted leaves the old files untouched.
_STAGING = ".new-"


def _staging(out: Path, part: str) -> Path:
    return out / f".{part}{_STAGING}{os.getpid()}"


def _install(staging: Path, out: Path, part: str) -> None:
    """Move a complete staged part into ``out``: first away with the old table (the part is not
    done in between), then every other file, the noise stores as one folder, the table last.
    Safe to repeat after an interruption (see :func:`_settle`)."""
    table = f"{part}_escape.csv"
    if (staging / table).is_file():
        (out / table).unlink(missing_ok=True)
    if (staging / "noise").is_dir():
        old = out / f".noise.old-{os.getpid()}"
        if (out / "noise").exists():
            os.replace(out / "noise", old)
        os.replace(staging / "noise", out / "noise")
        shutil.rmtree(old, ignore_errors=True)
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.name != table and not path.name.startswith("."):
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    if (staging / table).is_file():
        os.replace(staging / table, out / table)
    shutil.rmtree(staging)


def _settle(out: Path) -> None:
    """Leftovers of a study killed outright: a staged part that was complete is installed, any
    other staging folder removed."""
    for staging in sorted(out.glob(f".*{_STAGING}*")):
        part = staging.name[1:].rsplit(_STAGING, 1)[0]
        if part in PARTS and (staging / f"{part}_escape.csv").is_file():
            _install(staging, out, part)
        elif staging.is_dir():
            shutil.rmtree(staging)
    for old in out.glob(".noise.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def _run_parts(
    settings: dict, out: Path, *, device: str, progress: bool, log, force: bool = False
) -> dict[str, int]:
    """:func:`run_escape` after validation."""
    dev = pick_device(device)
    out.mkdir(parents=True, exist_ok=True)
    _settle(out)
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
        table, times = (None, None) if force else _load_part(out, part, digest)
        if table is not None:
            counts["skipped"] += 1
            log(f"{part}: already done ({out / f'{part}_escape.csv'}), skipped")
            results[part] = (table, times)
            continue
        log(f"{part}: running")
        t0 = time.perf_counter()
        staging = _staging(out, part)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            with torch.random.fork_rng(devices=[]):
                if part == "sde":
                    result = _run_sde(settings, staging, log, progress)
                elif part == "sgd":
                    result = _run_sgd(settings, staging, log, progress, dev)
                else:
                    result = _run_saddle(settings, staging, log, progress, dev)
            table, times = _save_part(staging, part, digest, result["table"], result.get("times"))
            _plots(part, table, times, staging / "plots")
            _write_text(staging / f"{part}_escape.md", _SECTIONS[part](table, settings))
            os.replace(_tmp(staging / f"{part}_escape.csv"), staging / f"{part}_escape.csv")
            _install(staging, out, part)
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as err:  # one failed part does not stop the others
            counts["failed"] += 1
            failures[part] = f"{type(err).__name__}: {err}"
            log(f"{part}: FAILED: {failures[part]}\n{traceback.format_exc()}")
            table, times = _load_part(out, part, digest)  # with force: the earlier result
            if table is not None:
                results[part] = (table, times)
                log(f"{part}: the earlier result for these settings is kept")
            continue
        finally:
            if staging.exists() and not (staging / f"{part}_escape.csv").is_file():
                shutil.rmtree(staging)  # an unfinished part: nothing of it is kept
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
