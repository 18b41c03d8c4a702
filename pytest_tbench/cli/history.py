"""The ``tbench store`` console commands, added to the ``tbench`` parser by __init__.py:

    tbench store import PATH... [--store URL]   saved runs (files, or folders searched for *.json)
    tbench store list [--store URL]             the stored runs
    tbench store export [RUN_ID] -o RUN.json    a stored run (default: the newest) as pytest-benchmark JSON
    tbench store export --last N [--machine GLOB] [--branch GLOB] --out-dir DIR
                                                the newest N matching runs, DIR/run-<id>.json each
    tbench history --out DIR [FILTERS] [--store URL]   plots, CSV and a page of each metric over the runs
    tbench trend [FILTERS] [--fail-new] [--fail-since DATE] [--record] [--store URL]
                                                the steps in each series

FILTERS: --model --mode --case --metric (default median_s) --machine --branch, fnmatch globs.
``trend`` exits 1 with ``--fail-new`` when a regression step is first found by this analysis (a nightly job's
gate: it records what it found, so the next night does not fail again for the same step), or with
``--fail-since`` when one was first found at or after a date.

``--store`` defaults to ``$TBENCH_STORE``, else ``.benchmarks/tbench.sqlite``. Exit codes: 0 done, 1 (trend)
a new regression step (--fail-new) or one found since --fail-since,
2 bad input (no such path, no run among the files, a store that cannot
be opened, nothing matched the filters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_tbench.core.atomic import write_text_atomic
from pytest_tbench.core.errors import OptionError
from pytest_tbench.history.errors import StoreError
from pytest_tbench.history.series import Filters
from pytest_tbench.settings.options import parse_percent

STORE_HELP = (
    "the store: a file path, sqlite:///PATH or postgresql://USER@HOST/DB (default: $TBENCH_STORE, else "
    ".benchmarks/tbench.sqlite); a password is best given as PGPASSWORD or in ~/.pgpass"
)


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store URL``, for every command that reads or writes a store."""
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)


def add_store_parser(commands: Any) -> None:
    """``tbench store`` and its subcommands, on the ``tbench`` parser's subparsers."""
    store = commands.add_parser(
        "store", help="the history store: import saved runs, list the stored runs, export one as JSON"
    )
    actions = store.add_subparsers(dest="store_command", required=True)
    add = actions.add_parser("import", help="store saved pytest-benchmark runs (files or folders of *.json)")
    add.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    add_store_option(add)
    listing = actions.add_parser("list", help="the stored runs, oldest first")
    add_store_option(listing)
    export = actions.add_parser(
        "export",
        help="stored runs as pytest-benchmark JSON (for tbench compare/report, pytest-benchmark): one run "
        "(-o RUN.json), or the newest N that match (--last N --out-dir DIR)",
    )
    export.add_argument("run", nargs="?", type=int, metavar="RUN_ID", help="the run (default: the newest)")
    export.add_argument("-o", "--out", type=Path, metavar="RUN.json", help="the file to write (one run)")
    export.add_argument(
        "--last",
        type=int,
        metavar="N",
        help="the newest N runs that match --machine and --branch",
    )
    export.add_argument("--machine", default="", help="with --last: the runs' machine label (a glob)")
    export.add_argument("--branch", default="", help="with --last: the runs' git branch (a glob)")
    export.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="with --last: the folder that gets run-<id>.json files"
    )
    add_store_option(export)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    for name in ("model", "mode", "case", "machine", "branch"):
        parser.add_argument(f"--{name}", default="", metavar="GLOB", help=f"only series whose {name} matches")
    parser.add_argument(
        "--metric",
        default="median_s",
        metavar="GLOB",
        help="the stored metric (extra_info key), e.g. peak_memory_bytes, throughput_tokens_per_s, '*' for "
        "every one (default median_s)",
    )
    add_store_option(parser)


def _add_detection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha", type=float, default=0.01, help="a step's significance level, corrected (default 0.01)"
    )
    parser.add_argument(
        "--min-change", default="1%", metavar="N%", help="smallest level change reported (default 1%%)"
    )


def add_history_parsers(commands: Any) -> None:
    """``tbench history`` and ``tbench trend``, on the ``tbench`` parser's subparsers."""
    history = commands.add_parser(
        "history", help="each metric over the stored runs: PNG plots, history.csv and a self-contained page"
    )
    history.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write into")
    history.add_argument("--no-steps", action="store_true", help="do not look for steps to mark")
    _add_filters(history)
    _add_detection(history)
    trend = commands.add_parser("trend", help="the steps (change points) in each stored series")
    _add_filters(trend)
    _add_detection(trend)
    trend.add_argument(
        "--fail-new",
        action="store_true",
        help="exit 1 when a regression step is first found by this analysis (no recorded change point is "
        "it); records the steps, as --record does, so that the next analysis knows them",
    )
    trend.add_argument(
        "--fail-since",
        metavar="DATE",
        help="exit 1 when a regression step was first found at or after DATE (2026-11-20, an ISO time, 7d, "
        "36h); a step not recorded yet counts as found now",
    )
    trend.add_argument(
        "--record",
        action="store_true",
        help="store the steps found (the dashboard's annotations), each with the date it was first found",
    )


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(args.model, args.mode, args.case, args.metric, args.machine, args.branch)


def _history(args: argparse.Namespace, url: str) -> int:
    from pytest_tbench.history.store import open_store
    from pytest_tbench.history.trends import find_steps
    from pytest_tbench.show.history.render import write_history

    with open_store(url, create=False) as store:
        series = store.series(_filters(args))
    if not series:
        print(f"tbench history: no stored series matches {_filters(args)}", file=sys.stderr)
        return 2
    steps = {}
    if not args.no_steps:
        found = find_steps(series, args.alpha, parse_percent(args.min_change))
        steps = {entry.series.key: entry.steps for entry in found}
    files = write_history(series, args.out, steps)
    print(
        f"tbench history: {files.series} series, {len(files.plots)} plots, {files.steps} steps marked: "
        f"{files.html}, {files.csv}"
    )
    return 0


def _trend(args: argparse.Namespace, url: str) -> int:
    from datetime import datetime, timezone

    from pytest_tbench.history.store import open_store
    from pytest_tbench.history.trends import (
        counted_changes,
        find_steps,
        findings,
        new_regressions,
        parse_since,
        regressions_since,
    )

    now = datetime.now(timezone.utc)
    since = parse_since(args.fail_since, now) if args.fail_since else None
    record = args.record or args.fail_new
    with open_store(url, create=False) as store:
        series = store.series(_filters(args))
        if not series:
            print(f"tbench trend: no stored series matches {_filters(args)}", file=sys.stderr)
            return 2
        counted = counted_changes(store.series(_counted_filters(args)))
        found = find_steps(series, args.alpha, parse_percent(args.min_change))
        stored = store.change_points(_filters(args)) if record or since is not None else None
        every = findings(found, stored, now)
        if record:
            store.record_change_points(found, now)
    # A counted metric (FLOPs, parameter bytes) moves exactly, with no noise to hide it: said first.
    if counted:
        print(f"tbench trend: {len(counted)} changes in counted metrics (exact)")
        for change in counted:
            print("  " + change.line())
    points = sum(len(s.points) for s in series)
    print(
        f"tbench trend: {len(every)} steps in {len(series)} series ({points} points; false discovery rate "
        f"{args.alpha:g} across the {len(series)} series tested)"
    )
    for finding in every:
        print("  " + finding.line())
    failed = 0
    if args.fail_new:
        fresh = new_regressions(every)
        if fresh:
            print(f"tbench trend: FAILED: {len(fresh)} new regression steps")
            failed = 1
        else:
            print("tbench trend: no new regression step")
    if since is not None:
        late = regressions_since(every, since)
        if late:
            print(f"tbench trend: FAILED: {len(late)} regression steps found since {since.isoformat()}")
            failed = 1
        else:
            print(f"tbench trend: no regression step found since {since.isoformat()}")
    return failed


def _counted_filters(args: argparse.Namespace) -> Filters:
    # Every metric of the same items: the counted ones among them are picked by name (trends.is_counted).
    return Filters(args.model, args.mode, args.case, "*", args.machine, args.branch)


def run_history_command(args: argparse.Namespace) -> int:
    from pytest_tbench.settings.store import default_store

    url = args.store or default_store()
    try:
        return _history(args, url) if args.command == "history" else _trend(args, url)
    except (StoreError, OptionError, ValueError) as exc:
        print(f"tbench {args.command}: {exc}", file=sys.stderr)
        return 2


def _short(commit: str) -> str:
    return commit[:12] if commit else "-"


def _import(args: argparse.Namespace, url: str) -> int:
    from pytest_tbench.history.importer import import_runs, run_files
    from pytest_tbench.history.store import open_store

    try:
        files = run_files(args.paths)
    except OptionError as exc:
        print(f"tbench store import: {exc}", file=sys.stderr)
        return 2
    if not files:
        print("tbench store import: no *.json file under " + " ".join(map(str, args.paths)), file=sys.stderr)
        return 2
    with open_store(url) as store:
        result = import_runs(store, files)
        label = store.label
    for path, reason in result.skipped:
        print(f"tbench store import: note: skipped {path}: {reason}", file=sys.stderr)
    print(
        f"tbench store import: {len(result.stored)} runs stored, {len(result.already)} already stored, "
        f"{len(result.skipped)} files skipped, in {label}"
    )
    return 0 if result.stored or result.already else 2


def _list(url: str) -> int:
    from tabulate import tabulate

    from pytest_tbench.history.store import open_store

    with open_store(url, create=False) as store:
        runs = store.runs()
        label = store.label
    rows = [
        (
            r.id,
            r.measured_at,
            _short(r.commit) + (" (dirty)" if r.dirty else ""),
            r.branch,
            r.machine,
            r.items,
            r.source,
        )
        for r in runs
    ]
    print(f"{len(runs)} runs in {label}")
    if rows:
        headers = ("run", "measured (UTC)", "commit", "branch", "machine", "items", "source")
        print(tabulate(rows, headers=headers))
    return 0


def _export_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with the export's arguments (None: nothing): one run to -o, or --last N to --out-dir."""
    if args.last is None:
        if args.out is None:
            return "give -o RUN.json (one run), or --last N --out-dir DIR (the newest N runs)"
        if args.out_dir is not None or args.machine or args.branch:
            return "--out-dir, --machine and --branch go with --last N"
        return None
    if args.last < 1:
        return f"--last {args.last}: give a number of runs, 1 or more"
    if args.run is not None or args.out is not None:
        return "--last N exports the newest runs to --out-dir; give RUN_ID -o RUN.json for one run instead"
    if args.out_dir is None:
        return "--last N needs --out-dir DIR"
    return None


def _export(args: argparse.Namespace, url: str) -> int:
    from pytest_tbench.history.store import open_store

    wrong = _export_usage(args)
    if wrong:
        print(f"tbench store export: {wrong}", file=sys.stderr)
        return 2
    if args.last is not None:
        return _export_newest(args, url)
    with open_store(url, create=False) as store:
        run = store.run_json(args.run)
    args.out.write_text(json.dumps(run, indent=4))
    stored = run["tbench_store"]
    print(
        f"tbench store export: run {stored['run_id']} ({len(run['benchmarks'])} items) written to {args.out}"
    )
    return 0


def _export_newest(args: argparse.Namespace, url: str) -> int:
    from pytest_tbench.history.store import open_store

    with open_store(url, create=False) as store:
        chosen = store.newest_runs(args.last, args.machine, args.branch)
        if not chosen:
            wanted = f"machine {args.machine!r}, branch {args.branch or '*'!r}"
            print(f"tbench store export: no stored run in {store.label} matches {wanted}", file=sys.stderr)
            return 2
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for info in chosen:
            out = args.out_dir / f"run-{info.id}.json"
            write_text_atomic(out, json.dumps(store.run_json(info.id), indent=4))
            print(f"{out}\t{info.id}\t{info.measured_at}\t{_short(info.commit)}\t{info.branch}")
    return 0


def run_store_command(args: argparse.Namespace) -> int:
    from pytest_tbench.settings.store import default_store

    url = args.store or default_store()
    try:
        if args.store_command == "import":
            return _import(args, url)
        if args.store_command == "export":
            return _export(args, url)
        return _list(url)
    except StoreError as exc:
        print(f"tbench store {args.store_command}: {exc}", file=sys.stderr)
        return 2
