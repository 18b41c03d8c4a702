"""The suite's forked pytest sessions (tests/forked.py) behave as the subprocess runs they replace."""

from __future__ import annotations

import os

import pytest
from transformers.models.gpt2 import modeling_gpt2

from .forked import runpytest_forked

PATCHING_CONFTEST = """
from transformers.models.gpt2 import modeling_gpt2

modeling_gpt2.GPT2MLP.forward = None
"""


def test_a_forked_session_is_a_process_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PATCHING_CONFTEST)
    pytester.makepyfile(
        test_one=f"""
import os
import sys

def test_own_process():
    assert os.getpid() != {os.getpid()}
    assert sys.path[0] == os.getcwd()  # as `python -m pytest` run there
    assert os.environ["FORKED_TEST"] == "yes"

def test_fails():
    assert False
"""
    )
    forward = modeling_gpt2.GPT2MLP.forward
    os.environ["FORKED_TEST"] = "yes"  # read at run time: the session gets this process' environment
    try:
        result = runpytest_forked(pytester, "-p", "no:cacheprovider")
    finally:
        del os.environ["FORKED_TEST"]
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert modeling_gpt2.GPT2MLP.forward is forward  # the session's conftest patched its own copy
    result.stdout.no_fnmatch_line("*cannot be rewritten*")


def test_a_forked_session_past_its_timeout_is_killed_and_the_next_one_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow="import time\n\ndef test_slow():\n    time.sleep(120)\n")
    with pytest.raises(pytester.TimeoutExpired):
        runpytest_forked(pytester, "-p", "no:cacheprovider", timeout=2)
    pytester.makepyfile(test_slow="def test_quick():\n    pass\n")
    runpytest_forked(pytester, "-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_session_with_other_threads_settings_runs_as_a_real_subprocess(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch reads OMP_NUM_THREADS when it is imported: a fork of the zygote would keep the zygote's threads
    # (the machine's cores), and the test would fail.
    pytester.makepyfile(
        test_threads="import torch\n\ndef test_one():\n    assert torch.get_num_threads() == 1\n"
    )
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = runpytest_forked(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
