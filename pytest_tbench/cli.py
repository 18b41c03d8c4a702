"""``tbench``: the plugin's console script, for CI steps that run outside pytest.

    tbench compare BASELINE.json [BASELINE2.json ...] CURRENT.json [--fail time:5% ...] [--format markdown]
                   [--any-machine]
    tbench report RUN.json [RUN2.json ...] --out DIR

Exit codes: 0 no regression (compare) / report written, 1 a regression, 2 bad input (unreadable file, not a
benchmark run, bad expression, other machine).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .compare.baseline import pool_runs
from .compare.criteria import DEFAULT_CRITERIA, parse_criteria
from .compare.runs import compare_runs, load_run, machine_differences
from .compare.table import render
from .errors import OptionError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbench", description="pytest-tbench tools")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare",
        help="gate CURRENT against BASELINE (pytest-benchmark JSON); several baselines are pooled into one",
    )
    compare.add_argument("baseline", type=Path, nargs="+", metavar="BASELINE.json")
    compare.add_argument("current", type=Path, metavar="CURRENT.json")
    compare.add_argument(
        "--fail",
        action="append",
        metavar="EXPR",
        # argparse %-formats help texts: the defaults' "5%" must be written "5%%".
        help="METRIC:N%%[:mode=M][:model=GLOB], repeatable (default: "
        + " ".join(DEFAULT_CRITERIA).replace("%", "%%")
        + ")",
    )
    compare.add_argument("--format", choices=("text", "markdown"), default="text")
    compare.add_argument("--any-machine", action="store_true", help="compare runs from different machines")
    report = commands.add_parser("report", help="CSV, Markdown, PNG plots and HTML from saved runs")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN.json")
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    return parser


def _report(runs: list[Path], out: Path) -> int:
    from .report import load_runs, write_report  # matplotlib only for this command

    try:
        loaded = load_runs(runs)
    except OptionError as exc:
        print(f"tbench report: {exc}", file=sys.stderr)
        return 2
    try:
        written = write_report(loaded, out)
    except OSError as exc:
        print(f"tbench report: cannot write to {out}: {exc}", file=sys.stderr)
        return 2
    print(f"tbench report: wrote {len(written)} files to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        return _report(args.runs, args.out)
    try:
        criteria = parse_criteria(args.fail or DEFAULT_CRITERIA)
        bases, now = [load_run(path) for path in args.baseline], load_run(args.current, role="run")
    except OptionError as exc:
        print(f"tbench compare: {exc}", file=sys.stderr)
        return 2
    differences = [d for base in bases for d in machine_differences(base, now)]
    if differences and not args.any_machine:
        print(
            "tbench compare: the runs come from different machines or software ("
            + "; ".join(dict.fromkeys(differences))
            + "); pass --any-machine to compare anyway",
            file=sys.stderr,
        )
        return 2
    base = pool_runs(bases)
    comparison = compare_runs(base, now, criteria)
    print(render(comparison, markdown=args.format == "markdown"))
    return 1 if comparison.regressions else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
