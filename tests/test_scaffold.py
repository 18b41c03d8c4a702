"""`tbench init`: the templates are the repository's own benches, nothing is overwritten, the config file it
writes is one the plugin reads, and a wheel installed in a fresh venv carries it (the README's command)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pytest_tbench.cli import main
from pytest_tbench.cli.scaffold import FILES, template

from .conftest import TINY

ROOT = Path(__file__).resolve().parent.parent


def test_the_templates_are_the_repository_s_benches_and_its_ci_recipe_s_commands() -> None:
    for name in ("test_forward.py", "test_generate.py", "test_train.py"):
        assert template(f"benches/{name}") == (ROOT / "benches" / name).read_text(), f"benches/{name} differs"
    # The workflow a project gets runs the same benchmark and gate commands as the repository's sample.

    def commands(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if re.match(r"\s*(pytest|tbench) ", line)]

    ours = (ROOT / ".github" / "workflows" / "bench-gate.yml").read_text()
    assert commands(template("bench-workflow.yml")) == commands(ours)
    assert len(commands(ours)) >= 4


def test_init_writes_the_files_and_then_refuses_to_overwrite_any(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--dir", str(tmp_path)]) == 0
    for _, dest in FILES:
        assert (tmp_path / dest).is_file(), dest
    out = capsys.readouterr().out
    assert "wrote" in out and "pytest benches/ --tbench-preset quick_test" in out

    # One file of a project's own: nothing is written, and the message names it.
    other = tmp_path / "other"
    (other / "benches").mkdir(parents=True)
    (other / "benches" / "test_forward.py").write_text("# mine\n")
    assert main(["init", "--dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert "benches/test_forward.py already exists; nothing was written" in err
    assert (other / "benches" / "test_forward.py").read_text() == "# mine\n"
    assert not (other / "tbench.yaml").exists() and not (other / "benches" / "test_train.py").exists()


def test_the_config_file_it_writes_is_read_by_the_plugin(pytester: pytest.Pytester) -> None:
    (pytester.path / "tbench.yaml").write_text(template("tbench.yaml"))
    pytester.makepyfile(test_forward=template("benches/test_forward.py"))
    args = ["--collect-only", "-q", "--tbench-config", "tbench.yaml", "-p", "no:cacheprovider"]
    result = pytester.runpytest(*args)
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    # quick_test x the four models it names, forward: 4 x 2 x 2.
    result.stdout.fnmatch_lines(["*16 tests collected*"])


def test_a_built_wheel_in_a_fresh_venv_inits_a_project_whose_benches_run(tmp_path: Path) -> None:
    """The wheel holds the templates (package data): built here, installed into a fresh venv (its other
    packages, torch and transformers, taken from this environment's site-packages by a .pth line, so nothing
    is downloaded), then `tbench init` and the benches on a tiny model, from that venv alone."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w"]
    build.append(str(wheels))
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("pytest_tbench-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # A path line, not the site folder itself: this environment's editable install (a .pth finder there)
    # is not run, so pytest_tbench comes from the wheel.
    Path(purelib, "zz-host-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)

    project = tmp_path / "project"
    project.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    tbench = venv / "bin" / "tbench"
    init = subprocess.run([tbench, "init"], cwd=project, env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    where = subprocess.run(
        [python, "-c", "import pytest_tbench; print(pytest_tbench.__file__)"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert str(venv) in where, f"pytest_tbench came from {where}, not the wheel"
    bench = [python, "-m", "pytest", "benches/", *TINY, "--tbench-preset", "quick_test", "-q"]
    ran = subprocess.run(bench, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert re.search(r"\b3 passed\b", ran.stdout), ran.stdout[-2000:]
