"""The reference pages under docs/reference/ are made from the code by docs/generate.py: a page on disk that
differs from what the code makes now fails here, and so does a ``--tbench-*`` option that ``pytest --help``
shows and the options page lacks."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from pytest_tbench.settings import options
from pytest_tbench.settings.options import Setting, parse_bool

GENERATOR = Path(__file__).resolve().parents[1] / "docs" / "generate.py"


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    """docs/generate.py as a module: docs/ is no package, so it is loaded from its path."""
    spec = importlib.util.spec_from_file_location("docs_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pages_are_current(generate: ModuleType) -> None:
    stale = []
    for path, text in generate.pages().items():
        page = generate.DOCS / path
        if not page.is_file() or page.read_text(encoding="utf-8") != text:
            stale.append(f"docs/{path}")
    assert not stale, f"stale (not what the code makes now): {', '.join(stale)}; run python docs/generate.py"


def test_every_help_option_is_on_the_options_page(generate: ModuleType, pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    # Each option's own line starts with it; its help text, wrapped below, may mention others.
    shown = set(re.findall(r"^ {2}(--tbench-[\w-]+)", result.stdout.str(), re.MULTILINE))
    assert len(shown) >= len(options.SETTINGS) + 3, sorted(shown)  # + config file and the two listings
    page = generate.pages()["reference/options.md"]
    missing = sorted(option for option in shown if not re.search(re.escape(option) + r"(?![\w-])", page))
    assert not missing, f"pytest --help shows {missing}, which docs/reference/options.md lacks"


def test_a_new_setting_reaches_the_pages(generate: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Setting("fake_knob", parse_bool, "", "a switch that only this test has", flag=True)
    monkeypatch.setattr(options, "SETTINGS", (*options.SETTINGS, fake))
    row = next(line for line in generate.options_page().splitlines() if "fake-knob" in line)
    assert row.startswith("| `--tbench-fake-knob` | `tbench_fake_knob` | `fake_knob` |"), row
    assert "a switch that only this test has" in row
    assert "| `fake_knob` | `--tbench-fake-knob` |" in generate.config_file_page()
