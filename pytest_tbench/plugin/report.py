"""``--tbench-report DIR``: the report of the session that just ran, written at its end."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tbench.plugin.pytest_benchmark_session import build_run_json
from pytest_tbench.show.report import write_report
from pytest_tbench.show.report.frame import run_of


def session_run_json(config: pytest.Config, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's pytest-benchmark JSON: the one it saved, or, when no saving option was given (it builds the
    JSON only to save it), the same document built through its own hooks."""
    return saved if saved is not None else build_run_json(config)


def write_session_report(config: pytest.Config, saved: dict[str, Any] | None, folder: str) -> str:
    """Write the report into ``folder`` (relative to where pytest was started); the line that says so."""
    out_dir = config.invocation_params.dir / folder
    try:
        data = session_run_json(config, saved)
        if data is None:
            return f"tbench report: nothing measured, nothing written to {out_dir}"
        written = write_report([run_of(data, "run")], out_dir)
    except Exception as exc:
        # The report is a by-product: its failure must not fail a session whose results are in already.
        return f"tbench report: not written to {out_dir}: {type(exc).__name__}: {exc}"
    return f"tbench report: {len(written)} files written to {out_dir}"
