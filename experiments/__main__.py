"""``python -m experiments CONFIG``: train, record, analyse and tabulate a sweep.

CONFIG is a preset name (``quick``, ``paper``, ``paper-gpu``, ``escape``) or a TOML file (see
:mod:`experiments.config`).  Finished runs are skipped on a rerun; a run killed half-way is redone.
Exit status: 0 when every run finished, 1 when some run failed (the others are kept), 2 for a
configuration that cannot be run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import tomllib
from pathlib import Path

from .config import ConfigError, load_config, parse_override, preset_names, resolve


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
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
    args = ap.parse_args(argv)
    try:
        raw = tomllib.loads(resolve(args.config).read_text())
        if raw.get("kind") == "escape":
            return _escape(raw, args)
        overrides = dict(parse_override(text) for text in args.set)
        config = load_config(args.config, overrides)
    except (ConfigError, tomllib.TOMLDecodeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - set(config.groups)
        if unknown:
            print(
                f"error: no group(s) {sorted(unknown)} in {config.source}; groups: "
                f"{', '.join(config.groups)}.",
                file=sys.stderr,
            )
            return 2
    out = args.out or Path(config.out)
    if args.list:
        for r in config.runs:
            if not args.only or r.group in args.only:
                print(r.run_id)
        return 0
    import torch

    from .runner import run_sweep
    from .tables import write_tables

    threads = args.threads or config.threads
    if threads:
        torch.set_num_threads(threads)

    t0 = time.perf_counter()
    n = sum(1 for r in config.runs if not args.only or r.group in args.only)
    print(f"{config.name}: {n} run(s) -> {out}", file=sys.stderr)
    counts = run_sweep(
        config,
        out,
        device=args.device,
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


def _escape(raw: dict, args) -> int:
    """The escape-time study (``kind = "escape"``): see :mod:`experiments.escape`."""
    if args.set or args.only or args.list:
        raise ConfigError("--set, --only and --list apply to training sweeps, not to 'escape'.")
    import torch

    from .escape import run_escape

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path(raw.get("out", "runs/escape"))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    counts = run_escape(
        raw,
        out,
        device=args.device,
        progress=progress,
        force=args.force,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(f"escape study: {counts}; tables: {out / 'escape.md'}", file=sys.stderr)
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
