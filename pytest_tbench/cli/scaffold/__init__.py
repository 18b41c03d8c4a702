"""``tbench init``: a project's first benches, config file and CI workflow, for users who installed tbench
from a package index (the wheel carries no ``benches/``; these templates are the repository's own benches).

Nothing is overwritten: where any of the files exists, nothing is written and the command says which.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

# Template (in this package's templates/) -> where it goes in the project.
FILES = (
    ("benches/test_forward.py", "benches/test_forward.py"),
    ("benches/test_generate.py", "benches/test_generate.py"),
    ("benches/test_train.py", "benches/test_train.py"),
    ("tbench.yaml", "tbench.yaml"),
    # A dotted folder would not travel as package data on every setuptools: the template is named plainly.
    ("bench-workflow.yml", ".github/workflows/bench.yml"),
)


class Refused(Exception):
    """Files that exist already: none was written."""

    def __init__(self, existing: tuple[str, ...]) -> None:
        super().__init__(existing)
        self.existing = existing

    def __str__(self) -> str:
        return (
            f"{', '.join(self.existing)} already exist{'s' if len(self.existing) == 1 else ''}; nothing was "
            "written (move them aside, or run tbench init in another folder: --dir DIR)"
        )


def template(name: str) -> str:
    return (resources.files(__package__) / "templates" / name).read_text(encoding="utf-8")


def init_project(target: Path) -> list[Path]:
    """Write every template into ``target``; the paths written. Raises Refused where any exists."""
    existing = tuple(dest for _, dest in FILES if (target / dest).exists())
    if existing:
        raise Refused(existing)
    written = []
    for name, dest in FILES:
        path = target / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template(name), encoding="utf-8")
        written.append(path)
    return written


def add_init_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init", help="write benches/ (forward, generate, train), a commented tbench.yaml and a CI workflow"
    )
    init.add_argument("--dir", type=Path, default=Path("."), help="the project folder (default: this one)")


def run_init(args: argparse.Namespace) -> int:
    target: Path = args.dir
    try:
        written = init_project(target)
    except Refused as exc:
        print(f"tbench init: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tbench init: cannot write into {target}: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"tbench init: wrote {path}")
    print(
        "next: HF_HUB_OFFLINE=1 pytest benches/ --tbench-preset quick_test   "
        "(or --tbench-config tbench.yaml; pytest --help lists every --tbench-* option)"
    )
    return 0
