"""One item measured in several worker processes (``--tbench-processes``), reported as one result.

Timings of the same code move between processes (allocator layout, thread placement, the host's load over
seconds) by more than they move inside one, so rounds taken in a single process understate the noise. Spread
over processes, the pooled samples carry that spread, and ``process_rounds`` lets the regression gate test
per-process medians instead of rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

from pytest_tbench.core.measurement import Measurement
from pytest_tbench.core.metric_table import (
    FLOPS_PER_CALL,
    MODEL_LOAD_TIME_S,
    PEAK_MEMORY_BYTES,
    PEAK_MEMORY_PER_PROCESS_BYTES,
    PROCESS_MEDIANS_S,
    PROCESS_ROUNDS,
    PROCESSES,
    PROFILE,
    ROUNDS,
    TOKENS_PER_CALL,
    TRAIN_STEPS,
)
from pytest_tbench.core.record import ItemRecord
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.measure.trackers.energy import pooled_energy
from pytest_tbench.models.flops import is_flop_pass_key
from pytest_tbench.scenarios import SCENARIOS
from pytest_tbench.settings.cases import BenchCase

# Counts that add up over processes; every other non-pooled key is taken from one process (below).
ADDITIVE_KEYS = (TRAIN_STEPS,)


def split_rounds(rounds: int, processes: int) -> list[int]:
    """``rounds`` spread as evenly as possible over ``processes`` workers, each measuring at least one
    (so an item of fewer rounds than processes runs in fewer processes)."""
    used = min(rounds, processes)
    share, extra = divmod(rounds, used)
    return [share + (1 if index < extra else 0) for index in range(used)]


def pool(case: BenchCase, outcomes: list[Outcome]) -> tuple[list[float], Measurement]:
    """All processes' samples in order, and one measurement: the memory figures of the process that reached
    the highest peak (the item's peak), rounds and counts summed, round-based metrics over all rounds, the
    FLOPs of the process that counted them."""
    if len(outcomes) == 1:
        return list(outcomes[0].samples), outcomes[0].info
    records = [ItemRecord.from_extra_info(case.as_params(), o.info, {"data": o.samples}) for o in outcomes]
    peaks = [int(r.metric(PEAK_MEMORY_BYTES) or 0) for r in records]
    peak_holder = outcomes[peaks.index(max(peaks))].info
    # One worker of the item counted its FLOPs (Job.count_flops): its count stands for every process's.
    counted: Mapping[str, Any] = next((o.info for o in outcomes if FLOPS_PER_CALL in o.info), {})
    pooled: dict[str, Any] = {key: value for key, value in counted.items() if is_flop_pass_key(key)}
    # The same worker profiled it (--tbench-profile), found the same way: a work without a FLOP pass has
    # a profile all the same.
    profiled = next((o.info[PROFILE] for o in outcomes if PROFILE in o.info), None)
    if profiled is not None:
        pooled[PROFILE] = profiled
    samples = [s for o in outcomes for s in o.samples]
    pooled[ROUNDS] = sum(int(r.metric(ROUNDS) or 0) for r in records)
    for key in ADDITIVE_KEYS:
        if key in peak_holder:
            pooled[key] = sum(int(r.metric(key) or 0) for r in records)
    pooled_metrics = SCENARIOS[case.mode].pooled_metrics
    if pooled_metrics is not None:
        pooled.update(pooled_metrics(case, [record for o in outcomes for record in o.records]))
    # Every process's meter window as one: the energy of all the measured rounds.
    tokens = int(peak_holder.get(TOKENS_PER_CALL) or 0)
    pooled.update(pooled_energy([o.info for o in outcomes], [len(o.samples) for o in outcomes], tokens))
    pooled.update(
        {
            PROCESSES: len(outcomes),
            PROCESS_ROUNDS: [len(o.samples) for o in outcomes],
            PROCESS_MEDIANS_S: [statistics.median(o.samples) for o in outcomes if o.samples],
            PEAK_MEMORY_PER_PROCESS_BYTES: peaks,
            MODEL_LOAD_TIME_S: statistics.fmean(r.metric(MODEL_LOAD_TIME_S) or 0.0 for r in records),
        }
    )
    return samples, peak_holder.without(PROFILE).add(("processes", pooled))
