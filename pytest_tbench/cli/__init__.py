"""``tbench``: the plugin's console script, for CI steps that run outside pytest.

    tbench compare BASELINE.json [BASELINE2.json ...] CURRENT.json [--fail time:5% ...] [--format markdown]
                   [--any-machine]
    tbench compare AB_RUN.json [--fail ...]   (a run measured with --tbench-ab: its paired items judged again)
    tbench report RUN.json [RUN2.json ...] --out DIR
    tbench merge SHARD1.json SHARD2.json ... -o RUN.json [--any-machine] [--any-commit]
    tbench store import PATH... [--store URL]   /   tbench store list [--store URL]   (cli/history.py)
    tbench history --out DIR [filters]   /   tbench trend [filters] [--fail-since DATE] [--record]
    tbench init [--dir DIR]   (benches/, tbench.yaml and a CI workflow for a new project; scaffold/)

Exit codes: 0 no regression (compare) / report or merged run written, 1 a regression, 2 bad input (unreadable
file, not a benchmark run, bad expression, other machine; for merge also an item in two shards; for init a
file that exists).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_tbench.cli.history import (
    add_history_parsers,
    add_store_parser,
    run_history_command,
    run_store_command,
)
from pytest_tbench.cli.scaffold import add_init_parser, run_init
from pytest_tbench.core.atomic import write_text_atomic
from pytest_tbench.core.criteria import DEFAULT_CRITERIA, Criterion, parse_criteria
from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.metric_table import AB
from pytest_tbench.core.run_file import load_run
from pytest_tbench.judge.baseline import pool_runs
from pytest_tbench.judge.runs import compare_runs, machine_differences
from pytest_tbench.settings.ab import UNDECIDED_MODES
from pytest_tbench.settings.options import parse_percent
from pytest_tbench.show.compare_table import render


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tbench", description="pytest-tbench tools")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare",
        help="gate CURRENT against BASELINE (pytest-benchmark JSON; several baselines are pooled into one), "
        "or judge the items of one --tbench-ab run again",
    )
    compare.add_argument("runs", type=Path, nargs="+", metavar="[BASELINE.json ...] CURRENT.json")
    compare.add_argument(
        "--fail",
        action="append",
        metavar="EXPR",
        # argparse %-formats help texts: the defaults' "5%" must be written "5%%".
        help="METRIC:N%%[:mode=M][:model=GLOB], repeatable (default: "
        + " ".join(DEFAULT_CRITERIA).replace("%", "%%")
        + ")",
    )
    compare.add_argument(
        "--drift",
        metavar="N%",
        help="drift between sessions to allow when the baseline is one run (default 15%%: a timing fails "
        "only past the baseline moved by it and then the threshold; several baselines use the drift between "
        "them)",
    )
    compare.add_argument(
        "--undecided",
        choices=UNDECIDED_MODES,
        default="warn",
        help="one --tbench-ab run: whether its undecided items ('cannot tell') fail it (fail) or not (pass, "
        "warn: the default; both exit 0 on them)",
    )
    compare.add_argument("--format", choices=("text", "markdown"), default="text")
    compare.add_argument("--any-machine", action="store_true", help="compare runs from different machines")
    report = commands.add_parser("report", help="CSV, Markdown, PNG plots and HTML from saved runs")
    report.add_argument("runs", type=Path, nargs="+", metavar="RUN.json")
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    merge = commands.add_parser(
        "merge", help="join the JSON of a run's shards (e.g. pytest-split groups) into one run"
    )
    merge.add_argument("runs", type=Path, nargs="+", metavar="SHARD.json")
    merge.add_argument("-o", "--out", type=Path, required=True, metavar="RUN.json", help="the merged run")
    merge.add_argument("--any-machine", action="store_true", help="merge shards from different machines")
    merge.add_argument("--any-commit", action="store_true", help="merge shards of different commits")
    add_store_parser(commands)
    add_history_parsers(commands)
    add_init_parser(commands)
    return parser


def _merge(runs: list[Path], out: Path, any_machine: bool, any_commit: bool) -> int:
    from pytest_tbench.cli.merge import merge_files

    try:
        merged = merge_files(runs, any_machine=any_machine, any_commit=any_commit)
    except OptionError as exc:
        print(f"tbench merge: {exc}", file=sys.stderr)
        return 2
    for note in merged.notes:  # the run records the first shard's settings; the others are said here
        print(f"tbench merge: note: {note}", file=sys.stderr)
    try:
        write_text_atomic(out, json.dumps(merged.run, indent=4))
    except OSError as exc:
        print(f"tbench merge: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    print(
        f"tbench merge: {len(merged.shards)} shards, {merged.items} items measured, "
        f"{merged.not_measured} not measured: wrote {out}"
    )
    return 0


def _report(runs: list[Path], out: Path) -> int:
    from pytest_tbench.show.report import load_runs, write_report  # matplotlib only for this command

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


def _rejudge_ab(
    run: dict[str, Any], path: Path, criteria: tuple[Criterion, ...], markdown: bool, undecided: str
) -> int:
    from pytest_tbench.judge.rejudge import rejudge
    from pytest_tbench.judge.run_verdict import settle_run
    from pytest_tbench.show.ab_summary import ab_failures, ab_table

    judged = rejudge(run, criteria)
    if not judged:
        print(
            f"tbench compare: {path} holds no item measured with --tbench-ab; give a baseline and a run "
            "(tbench compare BASELINE.json CURRENT.json)",
            file=sys.stderr,
        )
        return 2
    rows = [(item, {AB: {"verdicts": [v.as_json() for v in verdicts]}}) for item, verdicts in judged]
    # The run decides as the session did: over all its items' tests (judge/run_verdict.py).
    decided = settle_run([(item, info[AB]["verdicts"]) for item, info in rows], undecided)
    print(ab_table(rows, markdown=markdown))
    for line in ab_failures(rows, decided):
        print(line)
    print(decided.line())
    return 1 if decided.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        return _report(args.runs, args.out)
    if args.command == "merge":
        return _merge(args.runs, args.out, args.any_machine, args.any_commit)
    if args.command == "store":
        return run_store_command(args)
    if args.command in ("history", "trend"):
        return run_history_command(args)
    if args.command == "init":
        return run_init(args)
    *baselines, current = args.runs
    try:
        criteria = parse_criteria(args.fail or DEFAULT_CRITERIA)
        drift = parse_percent(args.drift) if args.drift is not None else None
        bases, now = [load_run(path) for path in baselines], load_run(current, role="run")
    except OptionError as exc:
        print(f"tbench compare: {exc}", file=sys.stderr)
        return 2
    if not bases:
        return _rejudge_ab(now, current, criteria, args.format == "markdown", args.undecided)
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
    comparison = compare_runs(base, now, criteria, drift)
    print(render(comparison, markdown=args.format == "markdown"))
    return 1 if comparison.regressions else 0
