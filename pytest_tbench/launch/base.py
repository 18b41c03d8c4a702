"""What every launcher takes and gives: a ``Job`` (one item's measurement, picklable so that it can travel
to a worker process) in, an ``Attempt`` (what one measurement of it gave) or an ``OutOfMemory`` out."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Protocol

from transformers import PretrainedConfig

from pytest_tbench.core.measurement import Measurement
from pytest_tbench.launch.conftests import Conftest
from pytest_tbench.measure.memory_errors import OutOfMemory
from pytest_tbench.measure.profile import ProfileRequest
from pytest_tbench.measure.rounds import DEFAULT_RULES, RoundRules
from pytest_tbench.models.registry import SpecKind
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings


@dataclass(frozen=True)
class Job:
    """One item's measurement: its case, its model's source, the settings a worker reads to build its work
    (``RunSettings``, not the session's), the rounds to run (already reduced to one under
    --benchmark-disable), how to time them and how long the worker may take. All of it picklable: a user's
    config factory becomes the config it made."""

    case: BenchCase
    spec: str
    kind: SpecKind
    # For random-weight models run in a worker; in-process (None) the session's model cache makes it.
    model_config: PretrainedConfig | None
    target: str | None  # for from_pretrained models
    run: RunSettings
    rounds: int
    warmup: int
    rules: RoundRules = DEFAULT_RULES
    # The session's conftest modules, which the worker's process imports before the model is built.
    conftests: tuple[Conftest, ...] = ()
    # Count one call's FLOPs after the rounds (an untimed pass as long as a call or more): False in every
    # worker of an item but the first (per A/B side), whose count the pooled result carries (pooling.py).
    count_flops: bool = True
    item_timeout: float | None = None  # seconds a worker may take for the item (--tbench-item-timeout)
    # --tbench-profile: profile more rounds after the measured ones, in the worker that counts FLOPs.
    profile: ProfileRequest | None = None


@dataclass(frozen=True)
class Attempt:
    """One measurement of an item: its figures so far, what one call processes, and the kept timings (none
    under --benchmark-disable). A regressed attempt may be replaced by a new one (``retries.py``)."""

    info: Measurement
    samples: int
    tokens: int
    timings: list[float]

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.timings) if self.timings else None


class Launcher(Protocol):
    """Where an item's rounds run. A launcher records its timings in the item's pytest-benchmark fixture
    and returns the attempt, or the out-of-memory it ran into (the plugin skips the item for it, outside any
    ``except`` block: ``memory_errors.settle_out_of_memory``); any other failure raises (``ItemFailed``:
    the item fails with its message alone)."""

    def measure(self, job: Job) -> Attempt | OutOfMemory: ...
