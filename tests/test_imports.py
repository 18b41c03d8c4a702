"""Import boundaries: the console script's commands start without torch, and the package's layers hold.

``tbench report`` and ``tbench compare`` read JSON files; torch and transformers cost seconds to import and
are not used there. Each check runs in a fresh interpreter, since this one imported everything already.
"""

from __future__ import annotations

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
        "import pytest_tbench.show.report",
        "import pytest_tbench.judge.runs, pytest_tbench.show.compare_table, pytest_tbench.judge.baseline",
        "from pytest_tbench.cli import main; main(['compare', '--help'])",
        "from pytest_tbench.cli import main; main(['report', '--help'])",
        "from pytest_tbench.cli import main; sys.exit(main(['report', 'run.json', '--out', 'out']))",
        "from pytest_tbench.cli import main; sys.exit(main(['compare', 'run.json', 'run.json']))",
        # An A/B side's process imports its module before it puts the side's import path first (a base
        # revision's transformers): the packages above it must not import torch or transformers.
        "import pytest_tbench.launch.ab.zygote",
    ],
    ids=["import-report", "import-compare", "compare-help", "report-help", "report", "compare", "ab-side"],
)
def test_commands_and_side_processes_do_not_import_torch(tmp_path: Path, code: str) -> None:
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
    assert {"pytest_tbench.plugin.fixture", "pytest_tbench.scenarios"} <= _modules_after(code, PACKAGE.parent)
    with pytest.raises(AttributeError, match="no_such_name"):
        pytest_tbench.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def package_modules() -> list[str]:
    """Every module of the package but ``__main__`` ones (importing one runs its command)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_the_layers_hold() -> None:
    """pyproject.toml's import contracts, as ``lint-imports`` checks them in CI: each layer imports only from
    those below it and no two siblings import each other, counting imports inside functions (the lazy ones
    too); core/ and history/ import neither torch nor transformers."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(PACKAGE.parent / "pyproject.toml")) == 0


def test_every_module_imports_first() -> None:
    """Every module imports as the first of the package in its interpreter: a cycle or a missing import that
    another module's import order hides shows up here. Torch stays loaded between them; the package's own
    modules are forgotten before each."""
    names = package_modules()
    code = f"""
import importlib
for name in {names!r}:
    for loaded in [m for m in sys.modules if m == "pytest_tbench" or m.startswith("pytest_tbench.")]:
        del sys.modules[loaded]
    importlib.import_module(name)
"""
    modules = _modules_after(code, PACKAGE.parent)
    assert names[-1] in modules  # the loop ran to its end
