"""What is run: each scenario turns a loaded model and a case into one measurable call (a ``Work``).

A mode's scenario (``scenario.Scenario``) says how many positions an item needs, which architectures it cannot
run, how its work is built from the session's settings, and how its metrics are recomputed when an item's
rounds ran in several processes. What the rest of the plugin knows of a mode (its default head, its tables)
is in ``core/modes.py``. A built-in mode is its entry there and its module here, named after it, which
defines ``SCENARIO``.

``register_mode`` adds a mode to both tables in one call (from a user's conftest.py); every reader looks modes
up in the tables when it is called, so a mode registered before collection becomes pytest items.
"""

from __future__ import annotations

import importlib

from pytest_tbench.core.axes import COMPILE_OFF
from pytest_tbench.core.modes import MODES as MODE_TABLE
from pytest_tbench.core.modes import Mode
from pytest_tbench.measure.work import Work
from pytest_tbench.models.loading import HEADS, LoadedModel
from pytest_tbench.scenarios.compiled import SteadyCompiled
from pytest_tbench.scenarios.scenario import Scenario
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings

# The built-in modes' scenarios: each mode in the table at import (the built-ins) has a module of its name.
SCENARIOS: dict[str, Scenario] = {
    name: importlib.import_module(f"{__name__}.{name}").SCENARIO for name in MODE_TABLE
}


def register_mode(mode: Mode, scenario: Scenario) -> None:
    """Add a mode: its tables and default head (``mode``) and how its work is built (``scenario``).

    Call it where pytest imports it before collecting tests (a conftest.py, a plugin), then mark tests
    ``@pytest.mark.tbench(mode=<name>)``. ValueError, and neither table changed, for a name already taken, a
    mode and scenario of different names or an unknown default head.
    """
    if mode.name != scenario.mode:
        raise ValueError(
            f"register_mode: the mode is named {mode.name!r} but its scenario {scenario.mode!r}; "
            "give both the same name"
        )
    if mode.name in MODE_TABLE or mode.name in SCENARIOS:
        raise ValueError(
            f"register_mode: a mode named {mode.name!r} already exists (modes: {', '.join(MODE_TABLE)}); "
            "pick another name"
        )
    if mode.default_head not in HEADS:
        raise ValueError(
            f"register_mode: mode {mode.name!r} has default head {mode.default_head!r}; "
            f"valid heads {', '.join(HEADS)}"
        )
    MODE_TABLE[mode.name] = mode
    SCENARIOS[mode.name] = scenario
    # Worker processes (--tbench-isolate, --tbench-processes, --tbench-ab) import the module that defines
    # the scenario's build function (launch/preload.py), which registers it there too.


def build_work(loaded: LoadedModel, case: BenchCase, settings: RunSettings) -> Work:
    scenario = SCENARIOS.get(case.mode)
    if scenario is None:
        # The plugin checks marks against this table, so the mode was registered in the pytest process but
        # not here: a worker of --tbench-isolate / --tbench-processes has only the forkserver's imports.
        raise LookupError(
            f"mode {case.mode!r} is not registered in this worker process (modes here: "
            f"{', '.join(SCENARIOS)}): a worker imports the module that defines a registered scenario's "
            "build function; define it in an importable module (or the conftest.py that registers it)"
        )
    work = scenario.build(loaded, case, settings)
    return work if case.compile == COMPILE_OFF else SteadyCompiled(work, case, loaded.devices)


__all__ = ["SCENARIOS", "Scenario", "Work", "build_work", "register_mode"]
