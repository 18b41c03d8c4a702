"""--tbench-item-timeout: a worker stuck in its item (a deadlocked kernel, a hung collective) fails that item
with what it was doing, is ended, and the session goes on."""

from __future__ import annotations

import pytest

from .forked import runpytest_forked
from .test_signals_workers import ARGS as WORKER_ARGS
from .test_signals_workers import BENCH, CONFTEST, WORKER_LAUNCHERS

ARGS = [*WORKER_ARGS, "--tbench-item-timeout", "5", "-rf"]


@WORKER_LAUNCHERS
def test_a_stuck_item_fails_by_its_limit_and_the_session_goes_on(
    pytester: pytest.Pytester, launcher: list[str]
) -> None:
    pytester.makeconftest(CONFTEST)  # batch 2 sleeps for two minutes in the worker
    pytester.makepyfile(test_bench=BENCH)
    result = runpytest_forked(pytester, *ARGS, *launcher, timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*exceeded --tbench-item-timeout 5 s while measuring its rounds*"])
    result.stdout.fnmatch_lines(["FAILED *test_forward[[]tiny-gpt2-b2-s8-*"])
