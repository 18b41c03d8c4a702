"""The ``tbench store`` console commands, added to the ``tbench`` parser by cli.py:

    tbench store import PATH... [--store URL]   saved runs (files, or folders searched for *.json)
    tbench store list [--store URL]             the stored runs

``--store`` defaults to ``$TBENCH_STORE``, else ``.benchmarks/tbench.sqlite``. Exit codes: 0 done, 2 bad input
(no such path, no run among the files, a store that cannot be opened).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import OptionError
from .errors import StoreError

STORE_HELP = (
    "the store: a file path, sqlite:///PATH or postgresql://USER@HOST/DB (default: $TBENCH_STORE, else "
    ".benchmarks/tbench.sqlite); a password is best given as PGPASSWORD or in ~/.pgpass"
)


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store URL``, for every command that reads or writes a store."""
    parser.add_argument("--store", metavar="URL", default=None, help=STORE_HELP)


def add_store_parser(commands: Any) -> None:
    """``tbench store`` and its subcommands, on the ``tbench`` parser's subparsers."""
    store = commands.add_parser("store", help="the history store: import saved runs, list the stored runs")
    actions = store.add_subparsers(dest="store_command", required=True)
    add = actions.add_parser("import", help="store saved pytest-benchmark runs (files or folders of *.json)")
    add.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    add_store_option(add)
    listing = actions.add_parser("list", help="the stored runs, oldest first")
    add_store_option(listing)


def _short(commit: str) -> str:
    return commit[:12] if commit else "-"


def _import(args: argparse.Namespace, url: str) -> int:
    from .importer import import_runs, run_files
    from .store import open_store

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

    from .store import open_store

    with open_store(url) as store:
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


def run_store_command(args: argparse.Namespace) -> int:
    from .urls import default_store

    url = args.store or default_store()
    try:
        if args.store_command == "import":
            return _import(args, url)
        return _list(url)
    except StoreError as exc:
        print(f"tbench store {args.store_command}: {exc}", file=sys.stderr)
        return 2
