"""``sgn-analyze``: run the battery on saved gradient noise and write a report folder.

Thin: parse, call :func:`sgn_memory.analyze.analyze` and :func:`sgn_memory.report.write_report`,
print a short table, map errors to exit codes (0 success, 1 data error, 2 usage error) with one
line on stderr -- never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help).\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sgn-analyze",
        description="Is the gradient noise Gaussian, alpha-stable, does it have memory? "
        "Analyse NoiseStores or .npy/.npz/.csv arrays (steps x series).",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="NoiseStore directories or arrays")
    p.add_argument("--out", default="sgn-report", help="report folder (default: sgn-report)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="what to print on stdout",
    )
    p.add_argument(
        "--preset",
        choices=("tan2021",),
        default=None,
        help="the seed authors' R/S protocol, and their mean-H statistic",
    )
    p.add_argument(
        "--max-coords",
        type=int,
        default=None,
        metavar="N",
        help="analyse a seeded random subset of N series per input",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", type=int, default=1024, help="series analysed at once")
    p.add_argument("--level", type=float, default=0.05)
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="spread the work over a Dask cluster (default: in process)",
    )
    p.add_argument(
        "--salvage",
        action="store_true",
        help="analyse what is still readable of a damaged NoiseStore (the series of its bad "
        "chunks are excluded and listed in the report)",
    )
    p.add_argument(
        "--stable-test",
        action="store_true",
        help="also run the alpha-stable goodness-of-fit test (slow)",
    )
    return p


def _progress():
    if not sys.stderr.isatty():
        return None

    def report(done: int, total: int) -> None:
        print(f"\rsgn-analyze: {done}/{total} series", end="", file=sys.stderr, flush=True)
        if done == total:
            print(file=sys.stderr)

    return report


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``): send what is left to /dev/null, so that the flush at
    exit does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None) -> int:
    """Run the command; returns the exit status (0, 1 data, 2 usage, 130 Ctrl-C, 141 pipe)."""
    state = {"report": None}
    try:
        return _main(argv, state)
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            print(file=sys.stderr)  # end the progress line
        done = state["report"]
        what = f"the report {done}/ is complete" if done else "nothing was written"
        print(f"sgn-analyze: interrupted; {what}.", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141


def _main(argv, state) -> int:
    args = _parser().parse_args(argv)  # exits 2 on usage errors
    for flag, value, ok, rule in (
        (
            "--max-coords",
            args.max_coords,
            args.max_coords is None or args.max_coords >= 1,
            "a positive integer",
        ),
        ("--seed", args.seed, args.seed >= 0, "a non-negative integer"),
        ("--block", args.block, args.block >= 1, "a positive integer"),
        ("--level", args.level, 0 < args.level < 1, "a number strictly between 0 and 1"),
    ):
        if not ok:
            print(f"sgn-analyze: {flag} must be {rule}; got {value}.", file=sys.stderr)
            return 2
    import logging

    # zarr reads chunks in asyncio tasks; when one fails the others' errors would be logged
    # at exit as "Task exception was never retrieved": the one-line message below says it all
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    from .analyze import analyze
    from .errors import SgnMemoryError, UsageError
    from .report import check_out, format_table, summary_dict, write_report

    def fail(err: SgnMemoryError) -> int:
        print("sgn-analyze: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return 2 if isinstance(err, UsageError) else 1

    out = Path(args.out)
    try:
        check_out(out, overwrite=args.overwrite, inputs=args.paths)  # before any work
        result = analyze(
            args.paths,
            preset=args.preset,
            max_coords=args.max_coords,
            seed=args.seed,
            block=args.block,
            level=args.level,
            stable_test=args.stable_test,
            scheduler=args.scheduler,
            progress=_progress(),
            salvage=args.salvage,
        )
        write_report(result, out, overwrite=args.overwrite, inputs=args.paths)
        state["report"] = out
    except SgnMemoryError as err:
        return fail(err)
    for src, (_, run) in zip(result.sources, result.runs.iterrows(), strict=True):
        if src.damage:
            print(
                f"sgn-analyze: warning: {src.label} is damaged: {len(src.damage)} chunk(s) "
                f"unreadable, {int(run['n_excluded'])} of {int(run['n_series'])} series "
                f"excluded; analysed: {src.salvaged or 'every readable value'} (listed in the "
                "report).",
                file=sys.stderr,
            )
    if args.format == "json":
        print(json.dumps(summary_dict(result), indent=2, allow_nan=False))
    elif args.format == "csv":
        result.runs.to_csv(sys.stdout, index=False)
    else:
        print(format_table(result.runs))
        print(f"\nreport: {out}/ (report.html, report.md, summary.json, series.csv, plots)")
    sys.stdout.flush()  # a closed pipe is met here, inside main, not at exit
    # all is done: a Ctrl-C while the interpreter shuts down would only print noise
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
