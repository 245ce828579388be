"""``sgn-analyze``: run the battery on saved gradient noise and write a report folder.

Thin: parse, call :func:`sgn_memory.analyze.analyze` and :func:`sgn_memory.report.write_report`,
print a short table, map errors to exit codes (0 success, 1 data error, 2 usage error) with one
line on stderr -- never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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


def main(argv=None) -> int:
    args = _parser().parse_args(argv)  # exits 2 on usage errors
    if args.max_coords is not None and args.max_coords < 1:
        print("sgn-analyze: --max-coords must be a positive integer.", file=sys.stderr)
        return 2
    if not 0 < args.level < 1:
        print("sgn-analyze: --level must lie strictly between 0 and 1.", file=sys.stderr)
        return 2
    import logging

    # zarr reads chunks in asyncio tasks; when one fails the others' errors would be logged
    # at exit as "Task exception was never retrieved": the one-line message below says it all
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    from .analyze import analyze
    from .errors import SgnMemoryError
    from .report import format_table, summary_dict, write_report

    try:
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
        )
        out = write_report(result, Path(args.out), overwrite=args.overwrite)
    except SgnMemoryError as err:
        print("sgn-analyze: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return 1
    if args.format == "json":
        print(json.dumps(summary_dict(result), indent=2, allow_nan=False))
    elif args.format == "csv":
        result.runs.to_csv(sys.stdout, index=False)
    else:
        print(format_table(result.runs))
        print(f"\nreport: {out}/ (report.html, report.md, summary.json, series.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
