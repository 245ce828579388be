"""``python -m experiments CONFIG``: train, record, analyse and tabulate a sweep.

CONFIG is a preset name (``quick``, ``paper``, ``paper-gpu``, ``escape``) or a TOML file (see
:mod:`experiments.config`).  Every run's settings, the device and the output folder are checked
before the first run starts (``--list`` checks them too).  Finished runs are skipped on a rerun;
a run killed half-way is redone; ``--force`` redoes finished runs and keeps the earlier result of
any whose replacement does not finish.  Exit status: 0 when every run finished, 1 when some run
failed (the others are kept), 2 for a configuration or command line that cannot be run (one line
saying what and where), 130 when interrupted (Ctrl-C: :func:`main` returns 130, the program
ends by SIGINT, which a shell reports as 130), 141 when stdout's reader went away.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from .config import (
    ConfigError,
    label,
    load_config,
    parse_override,
    preset_names,
    read_toml,
    resolve,
)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    what = "runs"
    try:
        path = resolve(args.config)
        if read_toml(path).get("kind") == "escape":
            what = "parts"
            return _escape(path, args)
        return _sweep(args, argv)
    except ConfigError as err:
        _say(f"error: {err}")
        return 2
    except KeyboardInterrupt:
        _say(f"interrupted; finished {what} are kept, the interrupted one is redone on a rerun.")
        return 130
    except BrokenPipeError:  # our reader went away (``| head``): stop quietly
        return 141


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m experiments",
        description="Train, record gradient noise, analyse and tabulate a sweep of runs.",
    )
    ap.add_argument("config", help=f"a preset ({', '.join(preset_names())}) or a TOML file")
    ap.add_argument("--out", type=Path, help="output folder (default: the config's 'out')")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    ap.add_argument("--only", nargs="+", metavar="GROUP", help="run these groups only")
    ap.add_argument("--force", action="store_true", help="redo finished runs too")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting in every run (a TOML value: steps=500, probe_at=[100])",
    )
    ap.add_argument("--threads", type=int, help="torch CPU threads (small models run best on 1)")
    ap.add_argument("--list", action="store_true", help="list the runs and exit")
    ap.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    return ap


def _say(line: str) -> None:
    """One line on stderr, even when stderr's reader has gone."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _sweep(args, argv: list[str]) -> int:
    overrides = dict(parse_override(text) for text in args.set)
    config = load_config(args.config, overrides)
    if args.only:
        unknown = set(args.only) - set(config.groups)
        if unknown:
            raise ConfigError(
                f"no group(s) {sorted(unknown)} in {label(Path(config.source))}; groups: "
                f"{', '.join(config.groups)}."
            )
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be at least 1.")
    threads = args.threads or config.threads
    out = args.out or Path(config.out)
    from .runner import pick_device

    device = pick_device(args.device)  # before any work: an unusable device is a usage error
    runs = [r for r in config.runs if not args.only or r.group in args.only]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is a file, not a folder.")
    if args.list:
        for r in runs:
            print(r.run_id)
        sys.stdout.flush()  # a closed pipe fails here, inside main, not at exit
        return 0
    _make_out(out)
    import torch

    from .runner import run_sweep
    from .tables import write_tables

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    print(f"{config.name}: {len(runs)} run(s) -> {out}", file=sys.stderr)
    counts = run_sweep(
        config,
        out,
        device=str(device),
        only=args.only,
        force=args.force,
        progress=args.progress,
        log=lambda m: print(m, file=sys.stderr),
    )
    command = "python -m experiments " + " ".join(shlex.quote(a) for a in argv)
    write_tables(out, title=f"Results of the '{config.name}' sweep", command=command)
    print(
        f"{counts['done']} run(s) done, {counts['skipped']} already finished, "
        f"{counts['reused']} reused from another group, "
        f"{counts['failed']} failed, in {time.perf_counter() - t0:.0f} s; tables: "
        f"{out / 'results.md'}; per-run reports: {out / 'runs'}/<group>/<run>/report/",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def _make_out(out: Path) -> None:
    """The output folder, created before any work; a ConfigError if it cannot be."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {out} is a file, not a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"output folder {out} cannot be created ({err.strerror}).") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder {out} is not writable.")


def _escape(path: Path, args) -> int:
    """The escape-time study (``kind = "escape"``): see :mod:`experiments.escape`."""
    if args.set or args.only or args.list:
        raise ConfigError("--set, --only and --list apply to training sweeps, not to 'escape'.")
    from .escape import resolve_settings, run_escape
    from .runner import pick_device

    raw = read_toml(path)
    try:
        resolve_settings(raw)
    except ConfigError as err:
        raise ConfigError(f"{label(path)}: {err}") from None
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be at least 1.")
    device = pick_device(args.device)
    out = args.out or Path(raw.get("out", "runs/escape"))
    _make_out(out)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    counts = run_escape(
        raw,
        out,
        device=str(device),
        progress=progress,
        force=args.force,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(f"escape study: {counts}; tables: {out / 'escape.md'}", file=sys.stderr)
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    status = main()
    if status == 141:  # keep the interpreter's last flush of a closed pipe from failing again
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError):
                pass
    if status == 130:
        # Interrupted: end as an interrupted program does, by SIGINT (the shell's status 130),
        # so that a shell loop or script around us stops too, as it does only for a child that
        # died of SIGINT; Python 3.11 would do it anyway whenever the interrupt landed in code
        # run by exec(), as dataclasses do.
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    sys.exit(status)
