"""--tbench-isolate workers, and out-of-memory items: skipped with a reason while the session goes on."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection

import pytest

from pytest_tbench.launch.base import Job
from pytest_tbench.launch.forkserver import WorkerDied, run_isolated
from pytest_tbench.measure.memory_errors import OomRecord
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings

from .conftest import TINY, run_json

# In the suite's parallel part: outcomes, memory and a generous 30 s bound: none compares timings.

TRAIN_BENCH = """
import pytest

@pytest.mark.tbench(mode="train")
def test_train(tbench):
    tbench.train()
"""


def _job() -> Job:
    case = BenchCase("forward", "tiny-gpt2", "base", 1, 8, "cpu", "float32")
    return Job(case, "tiny-gpt2", "builtin", None, None, RunSettings(), rounds=1, warmup=0)


def _segfault(conn: Connection, job: Job) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _oom_killed(conn: Connection, job: Job) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_crashing_worker_is_reported_not_waited_on() -> None:
    run_isolated(_job())  # start the forkserver outside the timed part
    start = time.perf_counter()
    with pytest.raises(WorkerDied) as died:
        run_isolated(_job(), target=_segfault)
    assert time.perf_counter() - start < 30
    assert died.value.exitcode == -signal.SIGSEGV
    assert "killed by SIGSEGV" in str(died.value)
    assert not died.value.killed


def test_a_worker_killed_with_sigkill_counts_as_out_of_memory() -> None:
    with pytest.raises(WorkerDied) as died:
        run_isolated(_job(), target=_oom_killed)
    assert died.value.killed


def test_isolated_items_land_in_the_same_stats_and_extra_info(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=TRAIN_BENCH)
    args = [*TINY, "--tbench-rounds", "4", "--tbench-warmup", "1"]
    inproc, inproc_data = run_json(pytester, *args)
    isolated, iso_data = run_json(pytester, *args, "--tbench-isolate")
    inproc.assert_outcomes(passed=1)
    isolated.assert_outcomes(passed=1)
    a, b = inproc_data["benchmarks"][0], iso_data["benchmarks"][0]
    assert b["extra_info"]["isolated"] is True and "isolated" not in a["extra_info"]
    assert len(b["stats"]["data"]) == b["stats"]["rounds"] == 4
    assert b["extra_info"]["median_s"] == pytest.approx(b["stats"]["median"])
    assert b["extra_info"]["train_steps"] == 5
    assert set(a["extra_info"]) <= set(b["extra_info"])
    assert b["extra_info"]["worker_wall_time_s"] > sum(b["stats"]["data"])


def test_isolated_peak_memory_matches_in_process_and_excludes_the_parent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=TRAIN_BENCH)
    args = [*TINY, "--tbench-models", "gpt2-mid", "--tbench-batch-sizes", "4", "--tbench-seq-lens", "128"]
    run_json(pytester, *args)  # pays the in-process run's one-time costs, as earlier items do in a session
    _, inproc = run_json(pytester, *args)
    _, isolated = run_json(pytester, *args, "--tbench-isolate")
    a, b = inproc["benchmarks"][0]["extra_info"], isolated["benchmarks"][0]["extra_info"]
    # Grads, AdamW state and activations: the same growth whichever process it happens in, within what heap
    # reuse moves the in-process figure late in a long pytest process (it failed once at 25% in the suite) ...
    growth = (b["peak_memory_increase_bytes"], a["peak_memory_increase_bytes"])
    assert growth[0] == pytest.approx(growth[1], rel=0.35), f"isolated vs in-process growth: {growth}"
    # ... but the worker's peak is its own, without the pytest process' other models and items.
    assert b["peak_rss_bytes"] < a["peak_rss_bytes"]


OOM_BENCH = """
import torch

def test_alloc(tbench):
    def call():
        if tbench.case.batch_size >= 2:
            torch.empty(10**15)  # far beyond any machine: torch's allocator refuses it at once
    tbench.measure(call)
"""


def test_out_of_memory_skips_the_item_and_the_next_one_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=OOM_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-batch-sizes", "2,1", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*out of memory: tiny-gpt2 batch 2 x seq 8 on cpu (float32, forward): RuntimeError*can't allocate*"]
    )


def test_oom_skip_skips_larger_items_up_front(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=OOM_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-batch-sizes", "2,4,1", "--tbench-seq-lens", "8,4", "-rs")
    # Without --tbench-oom-skip every large item tries (and fails) on its own.
    result.assert_outcomes(passed=2, skipped=4)
    assert "out of memory expected" not in result.stdout.str()
    result = pytester.runpytest(
        *TINY, "--tbench-batch-sizes", "2,4,1", "--tbench-seq-lens", "8,4", "-rs", "--tbench-oom-skip"
    )
    result.assert_outcomes(passed=2, skipped=4)
    # b2 s8 and b2 s4 run out of memory; b4 s8 (no smaller than b2 s8) and b4 s4 (than b2 s4) never start.
    result.stdout.fnmatch_lines(
        ["*out of memory expected: tiny-gpt2 already ran out of memory at batch 2 x seq 8 *"]
    )
    result.stdout.fnmatch_lines(
        ["*out of memory expected: tiny-gpt2 already ran out of memory at batch 2 x seq 4 *"]
    )


def test_oom_record_covers_only_items_no_smaller_in_every_dimension() -> None:
    record = OomRecord()
    failed = BenchCase("generate", "m", "lm", 4, 64, "cuda", "float16", new_tokens=20)
    record.add(failed)
    same_family = {"mode": "generate", "model": "m", "head": "lm", "device": "cuda", "dtype": "float16"}
    assert record.covering(BenchCase(**same_family, batch_size=8, seq_len=64, new_tokens=20))
    assert record.covering(BenchCase(**same_family, batch_size=4, seq_len=128, new_tokens=50))
    assert not record.covering(BenchCase(**same_family, batch_size=8, seq_len=32, new_tokens=20))
    assert not record.covering(BenchCase(**same_family, batch_size=2, seq_len=64, new_tokens=20))
    other_device = {**same_family, "device": "cpu"}
    assert not record.covering(BenchCase(**other_device, batch_size=8, seq_len=64, new_tokens=20))


ISOLATION_FAULTS_CONFTEST = """
import pytest_tbench.launch.isolated as runner
from pytest_tbench.launch.forkserver import WorkerDied
from pytest_tbench.launch.worker import Outcome

_real = runner.run_isolated

def faulty(job):
    if job.case.batch_size == 2:
        raise WorkerDied(-11)
    if job.case.batch_size == 3:
        raise WorkerDied(-9)
    if job.case.batch_size == 4:
        return Outcome("oom", message="OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    return _real(job)

runner.run_isolated = faulty

def pytest_unconfigure(config):  # pytester runs in this process: put the real launcher back
    runner.run_isolated = _real
"""


def test_isolated_worker_deaths_and_ooms_become_item_outcomes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(ISOLATION_FAULTS_CONFTEST)
    pytester.makepyfile(test_bench=TRAIN_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-isolate", "--tbench-batch-sizes", "2,3,4,1", "-rs")
    result.assert_outcomes(failed=1, skipped=2, passed=1)
    result.stdout.fnmatch_lines(
        ["*tiny-gpt2-b2-s8-cpu-float32: worker process died before reporting: killed by SIGSEGV*"]
    )
    result.stdout.fnmatch_lines(
        ["*out of memory: tiny-gpt2 batch 3 x seq 8*SIGKILL: most likely the kernel's OOM*"]
    )
    result.stdout.fnmatch_lines(["*out of memory: tiny-gpt2 batch 4 x seq 8*CUDA out of memory*"])


def test_what_counts_as_out_of_memory() -> None:
    import torch

    from pytest_tbench.measure.memory_errors import is_out_of_memory

    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB")
    )
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other call",
        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
        "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
        "CUDA driver error: out of memory",
    ],
)
def test_cuda_library_allocation_failures_count_as_out_of_memory(message: str) -> None:
    import torch

    from pytest_tbench.measure.memory_errors import is_out_of_memory

    assert is_out_of_memory(RuntimeError(message))
    assert is_out_of_memory(torch.AcceleratorError(message))  # what torch raises for a failed CUDA call


@pytest.mark.parametrize(
    "message",
    [
        "CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate(handle)`",
        "cuDNN error: CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT",
        "cuDNN error: CUDNN_STATUS_BAD_PARAM",
        "CUDA error: an illegal memory access was encountered",
    ],
)
def test_other_cuda_failures_are_errors_not_out_of_memory(message: str) -> None:
    from pytest_tbench.measure.memory_errors import is_out_of_memory

    assert not is_out_of_memory(RuntimeError(message))


# The failed call's activations live in its frame, which the exception's traceback holds: freeing memory
# while that exception is still being handled frees nothing. The bench records, when the device cache is
# emptied, whether the activation is gone by then; the next test reads it.
FREED_BENCH = """
import gc
import weakref

import torch

import pytest_tbench.measure.memory_errors as memory_errors

freed = []


class Activation:
    pass


def test_oom(tbench, monkeypatch):
    refs = []

    def call():
        activation = Activation()
        refs.append(weakref.ref(activation))
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(memory_errors, "empty_cache", lambda device: freed.append(refs[0]() is None))
    tbench.measure(call)


def test_freed_before_the_cache_was_emptied():
    assert freed == [True]
"""


def test_out_of_memory_frees_the_failed_calls_memory_after_the_exception_is_gone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_bench=FREED_BENCH)
    result = pytester.runpytest(*TINY)
    result.assert_outcomes(skipped=1, passed=1)


LOAD_OOM_CONFTEST = """
import torch
from pytest_tbench.models.loading import ModelCache

_real = ModelCache.get

def out_of_memory(self, key):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

ModelCache.get = out_of_memory

def pytest_unconfigure(config):  # pytester runs in this process: put the real loader back
    ModelCache.get = _real
"""


def test_out_of_memory_while_loading_feeds_oom_skip(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LOAD_OOM_CONFTEST)
    pytester.makepyfile(test_bench=TRAIN_BENCH)
    result = pytester.runpytest(*TINY, "--tbench-batch-sizes", "1,2", "--tbench-oom-skip", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*out of memory: tiny-gpt2 batch 1 x seq 8 *while loading the model: OutOfMemoryError: CUDA out*"]
    )
    result.stdout.fnmatch_lines(
        ["*out of memory expected: tiny-gpt2 already ran out of memory at batch 1 x seq 8 *"]
    )
