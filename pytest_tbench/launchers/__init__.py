"""Where an item runs, behind one interface (``base.Launcher``: ``measure(job) -> Attempt``): in the pytest
process (``inprocess.py``), in one worker process (``isolated.py``), or with its rounds split over several
(``processes.py``). All of them run the same rounds (``rounds.py``) through ``item.run_item``; ``choose.py``
picks one from the settings. Retries under the regression gate: ``retries.py``.

Only the interface is imported here: the launchers themselves import pytest-benchmark's adapter, which imports
this package."""

from .base import Attempt, Job, Launcher, RoundRules
from .forkserver import WorkerDied, run_isolated
from .worker import Outcome

__all__ = ["Attempt", "Job", "Launcher", "Outcome", "RoundRules", "WorkerDied", "run_isolated"]
