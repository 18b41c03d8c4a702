"""Every Python, YAML and TOML example in the README and the docs site runs here, as written, so an example
that breaks fails the suite. An example is a fenced block; one whose first line names a file
(``# conftest.py``, ``# benches/test_forward.py``) is written there. Each block must be claimed by a check
below: a new example without one fails ``test_every_example_is_run``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import TINY
from .forked import runpytest_forked

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("python", "yaml", "toml")
# Files whose examples stand in for included files (mkdocs' snippets: checked by `mkdocs build --strict`).
INCLUDED = re.compile(r'^--8<-- "')


@dataclass(frozen=True)
class Example:
    page: str  # relative to the repository
    language: str
    code: str

    @property
    def first_line(self) -> str:
        return self.code.splitlines()[0] if self.code else ""

    @property
    def file(self) -> str | None:
        """The file the example's first line names, if it does."""
        found = re.match(r"#\s*([\w./-]+\.(?:py|yaml|yml|toml))\b", self.first_line)
        return found.group(1) if found else None


def examples() -> list[Example]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for page in pages:
        if "reference" in page.relative_to(ROOT).parts:  # generated from the code (test_docs_reference.py)
            continue
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^( *)```(\w+)\n(.*?)^\1```", text, re.S | re.M):
            indent, language, body = match.groups()
            if language not in LANGUAGES:
                continue
            code = "\n".join(line.removeprefix(indent) for line in body.splitlines()) + "\n"
            if not INCLUDED.match(code):
                found.append(Example(str(page.relative_to(ROOT)), language, code))
    return found


def claimed(example: Example) -> str | None:
    """The check that runs ``example``."""
    if example.file is not None and example.file.endswith(".py"):
        return "python file"
    if example.language == "python" and "register_model(" in example.code:
        return "register_model"
    if example.language in ("yaml", "toml"):
        return "config file"
    return None


def test_every_example_is_run() -> None:
    found = examples()
    assert len(found) >= 5, "the examples were not found: has the docs' layout changed?"
    unclaimed = [f"{e.page}: {e.first_line}" for e in found if claimed(e) is None]
    assert not unclaimed, f"examples no test runs (claim them in tests/test_doc_examples.py): {unclaimed}"


def _by(check: str) -> list[Example]:
    return [e for e in examples() if claimed(e) == check]


def test_the_python_files_run(pytester: pytest.Pytester) -> None:
    """Every bench file, each in a folder of its own (two pages may both show ``benches/test_forward.py``),
    with the conftest.py a page gives, in one session on a tiny model: a page's conftest that registers a
    mode gets a test of that mode, as the page says to write it."""
    files = _by("python file")
    benches = [e for e in files if e.file != "conftest.py"]
    assert benches
    for index, bench in enumerate(benches):
        path = pytester.path / f"example{index}" / (bench.file or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(bench.code)
    tests = len(re.findall(r"^def test_", "".join(b.code for b in benches), re.M))
    for conftest in (e for e in files if e.file == "conftest.py"):
        mode = re.search(r'Mode\("(\w+)"', conftest.code)
        assert mode, f"{conftest.page}: a conftest example that registers no mode has no check here"
        pytester.makeconftest(conftest.code)
        pytester.makepyfile(
            test_own_mode=f"""
import pytest

@pytest.mark.tbench(mode="{mode.group(1)}")
def test_own(tbench):
    tbench.run()
"""
        )
        tests += 1
    # importlib: the examples' files share names in different folders.
    result = runpytest_forked(pytester, *TINY, "--import-mode=importlib")
    pages = sorted({e.page for e in files})
    assert result.ret == 0, f"{pages}: {result.stdout.str()[-3000:]}"
    result.assert_outcomes(passed=tests)


def test_register_model_examples_make_a_model_of_that_name(pytester: pytest.Pytester) -> None:
    for example in _by("register_model"):
        name = re.search(r'register_model\(\s*"([\w.-]+)"', example.code)
        assert name, example.page
        pytester.makeconftest(example.code)
        pytester.makepyfile(test_it="def test_forward(tbench):\n    tbench.forward()\n")
        args = ["--collect-only", "-q", "--tbench-models", name.group(1), "-p", "no:cacheprovider"]
        result = runpytest_forked(pytester, *args)
        assert result.ret == 0, f"{example.page}: {result.stdout.str()[-2000:]}"
        result.stdout.fnmatch_lines([f"*test_forward*{name.group(1)}*"])


def test_the_config_files_are_read(pytester: pytest.Pytester) -> None:
    """Each config-file example given to a session (collection: the file is read, its models resolved and
    its items made); a fragment without a name goes to tbench.yaml / tbench.toml."""
    pytester.makepyfile(test_it="def test_forward(tbench):\n    tbench.forward()\n")
    for example in _by("config file"):
        suffix = "toml" if example.language == "toml" else "yaml"
        path = pytester.path / f"example.{suffix}"
        path.write_text(example.code)
        args = ["--collect-only", "-q", "--tbench-config", str(path), "-p", "no:cacheprovider"]
        result = pytester.runpytest(*args)
        assert result.ret == 0, f"{example.page}: {example.first_line}: {result.stdout.str()[-2000:]}"
        result.stdout.fnmatch_lines(["*tests collected*"])
