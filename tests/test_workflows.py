"""The sample CI workflows (and the one `tbench init` writes) follow GitHub's hardening advice: no expression
pasted into a script (a branch name is attacker-chosen in a pull request), a read-only token, and no token
left in .git/config while the benchmarked code runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_tbench.cli.scaffold import template

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = {
    **{path.name: path.read_text() for path in sorted((ROOT / ".github" / "workflows").glob("*.yml"))},
    "tbench init's": template("bench-workflow.yml"),
}


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_a_workflow_is_hardened(name: str) -> None:
    workflow = yaml.safe_load(WORKFLOWS[name])
    assert workflow.get("permissions") == {"contents": "read"}, name
    for step in _steps(workflow):
        assert "${{" not in step.get("run", ""), f"{name}: an expression in a run script: {step['run'][:80]}"
        if str(step.get("uses", "")).startswith("actions/checkout"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{name}: {step}"
