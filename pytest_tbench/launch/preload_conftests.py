"""Imported last by the forkserver (``forkserver.CONFTESTS_MODULE``): the session's conftests, which it was
told through TBENCH_CONFTESTS (``conftests.exported``), imported before any worker is forked."""

from pytest_tbench.launch.conftests import load_from_environment

load_from_environment()
