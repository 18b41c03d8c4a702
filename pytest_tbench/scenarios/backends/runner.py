"""What a backend hands the forward scenario: the call the rounds time, one run's main output for the check
against PyTorch, what it records, and how it is released."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class BackendError(RuntimeError):
    """A backend could not run the item as asked; the message says why."""


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Runner:
    call: Callable[[], object]  # one forward on the item's inputs, as the rounds time it
    main_output: Callable[[], Any]  # one run's first output (a tensor or numpy array), for the output check
    info: dict[str, Any] = field(default_factory=dict)  # extra_info entries the backend records
    close: Callable[[], None] = _nothing  # releases the session, the traced module and any files
