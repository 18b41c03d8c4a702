"""Import boundaries: the console script's commands start without torch, and the package has no import cycle.

``tbench report`` and ``tbench compare`` read JSON files; torch and transformers cost seconds to import and
are not used there. Each check runs in a fresh interpreter, since this one imported everything already.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_tbench

from .test_report import crafted_run

PACKAGE = Path(pytest_tbench.__file__).parent
HEAVY = ("torch", "transformers")

# Runs the code given after it, then prints the modules that were imported, whatever the exit.
WRAPPER = """
import json, sys
try:
    exec(sys.argv[1])
except SystemExit:
    pass
finally:
    print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, code], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import pytest_tbench.report",
        "import pytest_tbench.compare.runs, pytest_tbench.compare.table, pytest_tbench.compare.baseline",
        "from pytest_tbench.cli import main; main(['compare', '--help'])",
        "from pytest_tbench.cli import main; main(['report', '--help'])",
        "from pytest_tbench.cli import main; sys.exit(main(['report', 'run.json', '--out', 'out']))",
        "from pytest_tbench.cli import main; sys.exit(main(['compare', 'run.json', 'run.json']))",
    ],
    ids=["import-report", "import-compare", "compare-help", "report-help", "report", "compare"],
)
def test_console_script_does_not_import_torch(tmp_path: Path, code: str) -> None:
    (tmp_path / "run.json").write_text(json.dumps(crafted_run()), encoding="utf-8")
    modules = _modules_after(code, tmp_path)
    assert "pytest_tbench" in modules
    assert [name for name in HEAVY if name in modules] == []
    if "'report'," in code and "--help" not in code:
        assert (tmp_path / "out" / "report.md").is_file()  # the command did run


def test_public_names_are_lazy_and_still_importable() -> None:
    modules = _modules_after("import pytest_tbench", PACKAGE.parent)
    assert [name for name in HEAVY if name in modules] == []
    code = (
        "from pytest_tbench import BenchCase, Mode, Scenario, TBench, TBenchConfig, Work, register_mode, "
        "register_model, __version__"
    )
    assert {"pytest_tbench.fixture", "pytest_tbench.scenarios"} <= _modules_after(code, PACKAGE.parent)
    with pytest.raises(AttributeError, match="no_such_name"):
        pytest_tbench.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not inside functions, not under ``if TYPE_CHECKING``."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                pending += [*node.body, *node.orelse]
        elif isinstance(node, ast.Try):
            pending += [*node.body, *node.orelse, *node.finalbody]
            pending += [statement for handler in node.handlers for statement in handler.body]
        elif isinstance(node, (ast.ClassDef, ast.With)):
            pending += node.body
    return found


def import_graph() -> dict[str, set[str]]:
    """Each package module -> the package modules its module-level code imports."""
    paths = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            edges.add(base)
            edges |= {f"{base}.{alias.name}" for alias in node.names}  # ``from pkg import submodule``
        graph[name] = {edge for edge in edges if edge in paths and edge != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as the modules along it ([] when there is none)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return []


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_between_package_modules() -> None:
    graph = import_graph()
    assert "pytest_tbench.compare.criteria" in graph["pytest_tbench.options"]  # the graph sees edges
    assert find_cycle(graph) == []


def test_every_module_imports_first() -> None:
    """Every module imports as the first of the package in its interpreter: a cycle or a missing import that
    another module's import order hides shows up here. Torch stays loaded between them; the package's own
    modules are forgotten before each."""
    names = sorted(import_graph())
    code = f"""
import importlib
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "pytest_tbench" or m.startswith("pytest_tbench.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
"""
    modules = _modules_after(code, PACKAGE.parent)
    assert names[-1] in modules  # the loop ran to its end
