"""The tensor-parallel launcher (--tbench-tp N): one process per rank, started by torch.distributed's elastic
launch API (what ``torchrun`` runs, as optimum-benchmark's torchrun launcher uses it), each loading the model
with transformers' ``tp_plan="auto"`` and running the item's warm-up and rounds with a barrier before every
timed call, so that the ranks start each round together. The ranks' results become one item
(``merge_ranks``): a round lasts as long as its slowest rank, memory is recorded per rank and summed.

transformers sets up the process group itself from the launcher's environment (nccl on CUDA GPUs, one a rank
by LOCAL_RANK; gloo on the CPU, where the ranks share the cores, split evenly between them).
"""

from __future__ import annotations

import os
import socket
import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from pytest_tbench.core.errors import ItemFailed
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.core.metric_table import (
    DECODE_KV_READ_BYTES,
    DECODE_WEIGHTS_READ_BYTES,
    FLOPS_PER_CALL,
    MODEL_LOAD_TIME_S,
    PARAMETER_BYTES,
    PEAK_MEMORY_BYTES,
    PEAK_MEMORY_INCREASE_BYTES,
    PEAK_MEMORY_PER_RANK_BYTES,
    RANK_MEDIANS_S,
    SAMPLES_PER_CALL,
    TOKENS_PER_CALL,
    TP_RANKS,
)
from pytest_tbench.core.record import number
from pytest_tbench.launch.base import Attempt, Job
from pytest_tbench.launch.worker import Outcome, run_job
from pytest_tbench.machine.devices import is_cuda
from pytest_tbench.measure.memory_errors import OutOfMemory
from pytest_tbench.measure.pytest_benchmark_api import record_samples, round_rules
from pytest_tbench.models.flops import PHASE_FLOPS
from pytest_tbench.models.loading import WEIGHTS_SEED, head_class
from pytest_tbench.models.placement import saved_random_weights
from pytest_tbench.settings.cases import BenchCase

# One rank's meter reads its own GPU only; the item's energy would be the sum over ranks, not yet done.
ENERGY_UNAVAILABLE = (
    "tensor parallel: each rank can meter only its own device; the ranks' sum is not recorded"
)


class TorchrunLauncher:
    def __init__(self, benchmark: Any, ranks: int) -> None:
        self.benchmark = benchmark
        self.ranks = ranks

    def measure(self, job: Job) -> Attempt | OutOfMemory:
        try:
            rules = round_rules(self.benchmark)
        except ValueError as exc:
            raise ItemFailed(f"{job.case.id}: {exc}") from None
        with weights_folder(job) as target:
            outcomes = launch(replace(job, target=target, model_config=None, rules=rules), self.ranks)
        if isinstance(outcomes, OutOfMemory):
            return outcomes
        samples, info = merge_ranks(job.case, outcomes)
        record_samples(self.benchmark, samples)
        timings = [] if self.benchmark.disabled else samples
        return Attempt(info, info[SAMPLES_PER_CALL], info[TOKENS_PER_CALL], timings)


@contextmanager
def weights_folder(job: Job) -> Iterator[str]:
    """What the ranks load with from_pretrained: the job's target, or a random-weight model saved once here
    (from_config takes no tensor-parallel plan, and every rank must start from the same weights)."""
    if job.model_config is None:
        assert job.target is not None
        yield job.target
        return
    config = job.model_config
    with saved_random_weights(
        head_class(job.case.head, config), config, job.case.model_key.weights_dtype, WEIGHTS_SEED
    ) as folder:
        yield folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RankFailed(RuntimeError):
    """A rank's measurement failed; raised (not returned) so that the elastic agent stops the other ranks,
    which would otherwise wait at the next collective until its timeout."""


OOM_PREFIX = "out of memory: "


def launch(job: Job, ranks: int) -> list[Outcome] | OutOfMemory:
    """The job in ``ranks`` processes on this machine; each rank's outcome, in rank order, or the out of
    memory one ran into. Any other failure of a rank fails the item with that rank's error."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=ranks,
        run_id=f"tbench-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        max_restarts=0,  # a measurement is not retried behind the user's back
        monitor_interval=0.1,
        start_method="spawn",  # fork after torch has run OpenMP or CUDA in the pytest process can hang
    )
    try:
        results = elastic_launch(config, entrypoint=rank_main)(job)
    except ChildFailedError as exc:
        messages = {rank: _message(failure.message) for rank, failure in sorted(exc.failures.items())}
        for rank, message in messages.items():
            if OOM_PREFIX in message:
                return OutOfMemory(f"tensor-parallel rank {rank}: {message.split(OOM_PREFIX, 1)[1]}")
        details = "\n".join(f"rank {rank}: {message}" for rank, message in messages.items())
        raise ItemFailed(f"{job.case.id}: a tensor-parallel rank failed:\n{details}") from None
    return [results[rank] for rank in sorted(results)]


def _message(found: Any) -> str:
    """A failed rank's error as the elastic agent recorded it (a dict with ``message``, or text)."""
    if isinstance(found, dict):
        return str(found.get("message", found))
    return str(found)


@record  # the rank's exception reaches the parent's ChildFailedError
def rank_main(job: Job) -> Outcome:
    """One rank: the job on this rank's device (its own GPU by LOCAL_RANK; on the CPU its share of the
    cores), with a barrier before each timed call."""
    import torch.distributed as dist

    local_rank, world = int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    case = job.case
    if is_cuda(case.device):
        case = replace(case, device=f"cuda:{local_rank}")
        torch.cuda.set_device(local_rank)  # before transformers opens the process group on it
    else:  # the ranks share the machine's cores: each gets its own share, not all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    def barrier() -> None:
        if dist.is_initialized():  # transformers initialised the group while loading
            dist.barrier()

    # Every rank profiles (the barrier needs them all in each round), each into a trace of its own.
    profile = replace(job.profile, label=f"rank{local_rank}") if job.profile is not None else None
    outcome = run_job(replace(job, case=case, profile=profile), barrier, ENERGY_UNAVAILABLE)
    if outcome.status == "oom":
        raise RankFailed(OOM_PREFIX + outcome.message)
    if outcome.status == "error":
        raise RankFailed(outcome.message)
    return outcome


def merge_ranks(case: BenchCase, outcomes: list[Outcome]) -> tuple[list[float], Measurement]:
    """The ranks' results as one item: each round as long as its slowest rank (the ranks exchange
    activations every layer, so the call is done when the last one is), rank 0's other entries, memory per
    rank and summed (every rank holds its shard of the weights and its own activations), the longest load,
    and the work each rank counts of its own shard (FLOPs, decode bytes read) summed."""
    rounds = min(len(o.samples) for o in outcomes)
    samples = [max(o.samples[index] for o in outcomes) for index in range(rounds)]
    peaks = [int(o.info.get(PEAK_MEMORY_BYTES) or 0) for o in outcomes]
    increases = [int(o.info.get(PEAK_MEMORY_INCREASE_BYTES) or 0) for o in outcomes]
    # Each rank's parameter_bytes is its shard (replicated norms and embeddings in every rank).
    shards = [int(o.info.get(PARAMETER_BYTES) or 0) for o in outcomes]
    merged: dict[str, Any] = {
        "device": case.device,  # rank 0's was its own GPU; the item is the case's
        TP_RANKS: len(outcomes),
        PEAK_MEMORY_BYTES: sum(peaks),
        PEAK_MEMORY_INCREASE_BYTES: sum(increases),
        PEAK_MEMORY_PER_RANK_BYTES: peaks,
        PARAMETER_BYTES: sum(shards),
        "parameter_bytes_per_rank": shards,
        RANK_MEDIANS_S: [statistics.median(o.samples) for o in outcomes if o.samples],
        MODEL_LOAD_TIME_S: max(float(o.info.get(MODEL_LOAD_TIME_S) or 0.0) for o in outcomes),
    }
    return samples, outcomes[0].info.add(("ranks", merged), ("ranks", _whole_model_work(outcomes)))


# What each rank counts of its own shard: the item's figure is the ranks' sum (measure/limits.py then sets the
# achieved TFLOP/s and the decode bandwidth from the merged median, against one peak per GPU rank).
SUMMED_PER_RANK = (FLOPS_PER_CALL, DECODE_WEIGHTS_READ_BYTES, DECODE_KV_READ_BYTES)


def _whole_model_work(outcomes: list[Outcome]) -> dict[str, Any]:
    keys = [k for k in outcomes[0].info if k.endswith(PHASE_FLOPS) or k in SUMMED_PER_RANK]
    summed: dict[str, Any] = {}
    for key in keys:
        values = [number(o.info.get(key)) for o in outcomes]
        if all(v is not None for v in values):
            total = sum(v for v in values if v is not None)
            summed[key] = int(total) if all(isinstance(o.info.get(key), int) for o in outcomes) else total
    return summed
