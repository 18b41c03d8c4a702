"""``--tbench-store URL``: the session's run written into the history store at its end (by the controller
alone under pytest-xdist, which holds every worker's items).

A store failure does not change the session's exit status: the measurements are in the run's JSON
(``--benchmark-json``, ``--benchmark-autosave``) whatever the store does, and ``tbench store import`` stores
them later. It is reported as a ``TBenchStoreWarning`` and a line in the terminal summary, with the URL's
password masked.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from pytest_tbench.core.errors import OptionError
from pytest_tbench.plugin.pytest_benchmark_session import build_run_json
from pytest_tbench.settings.store import StoreLocation, mask_text


class TBenchStoreWarning(UserWarning):
    """The session's run was not written into the history store."""


def store_session_run(
    config: pytest.Config, saved: dict[str, Any] | None, location: StoreLocation
) -> tuple[str, bool]:
    """Write the session's run (the JSON pytest-benchmark saved, else the same built through its hooks) into
    the store; the line that says what happened, and whether the write failed."""
    shown = str(location)
    try:
        from pytest_tbench.history.errors import StoreError
        from pytest_tbench.history.store import SOURCE_PYTEST, open_store
    except ImportError as exc:  # parse_store checked SQLAlchemy; psycopg or another import may still fail
        return _failed(f"{shown}: {exc}; pip install 'pytest-tbench[store]'"), True
    try:
        run = saved if saved is not None else build_run_json(config)
        if run is None:
            return f"tbench store: nothing measured, nothing stored in {shown}", False
        with open_store(location.url, config.invocation_params.dir) as store:
            run_id = store.write_run(run, SOURCE_PYTEST)
            shown = store.label
    except (StoreError, OptionError) as exc:
        return _failed(mask_text(str(exc))), True
    if run_id is None:
        return f"tbench store: this run was stored already in {shown}", False
    return f"tbench store: run {run_id} stored in {shown} ({len(run['benchmarks'])} items)", False


def _failed(reason: str) -> str:
    line = f"tbench store: run not stored: {reason}"
    warnings.warn(TBenchStoreWarning(line), stacklevel=2)
    return line
