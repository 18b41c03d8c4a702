"""Where an item runs: in the pytest process (``TBench.run``), or in a fresh worker process per item."""

from .isolated import WorkerDied, run_isolated
from .worker import Job, Outcome

__all__ = ["Job", "Outcome", "WorkerDied", "run_isolated"]
