"""Out-of-memory: which errors mean it, what an item that hit it says, and skipping what cannot fit either."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from pytest_tbench.machine.devices import empty_cache
from pytest_tbench.settings.cases import BenchCase

T = TypeVar("T")

# torch.cuda.OutOfMemoryError is torch.OutOfMemoryError: the caching allocator's "CUDA out of memory".
OOM_ERRORS: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)

# Allocation failures that reach Python only as a RuntimeError (torch.AcceleratorError for CUDA calls) whose
# message names them: CUDA libraries report a failed allocation as their own status code, and CUDA calls
# outside the caching allocator as the runtime's or driver's "out of memory".
ALLOCATION_FAILURES: tuple[str, ...] = (
    "can't allocate memory",  # torch's CPU allocator
    "CUDA out of memory",  # the caching allocator's text, should it arrive re-raised as a plain RuntimeError
    "CUDA error: out of memory",  # cudaErrorMemoryAllocation: context creation, a library's own cudaMalloc
    "CUDA driver error: out of memory",  # CUDA_ERROR_OUT_OF_MEMORY from a driver call (e.g. loading a kernel)
    "HIP error: out of memory",  # the same on ROCm builds, where the device is still named cuda
    "CUBLAS_STATUS_ALLOC_FAILED",  # cuBLAS / cuBLASLt could not allocate its handle or workspace
    "CUDNN_STATUS_ALLOC_FAILED",  # cuDNN 8
    "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",  # cuDNN 9 splits it into device ...
    "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",  # ... and host memory
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "CUSPARSE_STATUS_ALLOC_FAILED",
    "CUFFT_ALLOC_FAILED",
)
# Deliberately not here: CUBLAS_STATUS_NOT_INITIALIZED (often an allocation failure in cublasCreate, but
# also a broken driver or setup, which a skip would hide);
# CUDNN_STATUS_NOT_SUPPORTED_SHARED_MEMORY_INSUFFICIENT (a kernel's launch configuration, not memory left);
# cuDNN's generic INTERNAL_ERROR / EXECUTION_FAILED. cuDNN has no "NOT_ENOUGH_WORKSPACE" status: a too-small
# workspace is the caller's bad parameter (CUDNN_STATUS_BAD_PARAM).


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, OOM_ERRORS) or (
        isinstance(exc, RuntimeError) and any(marker in str(exc) for marker in ALLOCATION_FAILURES)
    )


@dataclass(frozen=True)
class OutOfMemory:
    """An allocation failure, kept as text only: the exception's traceback holds the frames of the failed
    call, and with them its activations, which must be gone before memory is freed."""

    detail: str


def catch_out_of_memory(action: Callable[[], T]) -> T | OutOfMemory:
    """``action()``, or what ran out of memory if it did; any other exception propagates.

    The exception is dropped on return: leaving the ``except`` block deletes its name and clears
    ``sys.exc_info()``, so nothing holds the traceback (and the failed call's tensors) any more."""
    try:
        return action()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        return OutOfMemory(f"{type(exc).__name__}: {exc}")


def oom_reason(case: BenchCase, detail: str) -> str:
    first_line = detail.strip().splitlines()[0] if detail.strip() else ""
    return (
        f"out of memory: {case.model} batch {case.batch_size} x seq {case.seq_len} on {case.device} "
        f"({case.dtype}, {case.mode}): {first_line}"
    )


def free_memory(device: str) -> None:
    """Drop what the failed item left behind, so the next one starts clean."""
    gc.collect()
    empty_cache(device)


def settle_out_of_memory(
    case: BenchCase, detail: str, ooms: OomRecord, release: Callable[[], None] | None = None
) -> str:
    """How every item that ran out of memory ends, wherever it did (model load, in-process rounds, isolated
    worker): ``release`` what it holds, free the device's cache, record it for --tbench-oom-skip; the reason
    the item is skipped with (by the plugin).

    Call it outside any ``except`` block (see ``catch_out_of_memory``): inside one, the exception being
    handled still holds the failed call's frames, so their memory is not freed, and the skip chains to it."""
    if release is not None:
        release()
    free_memory(case.device)
    ooms.add(case)
    return oom_reason(case, detail)


def _family(case: BenchCase) -> tuple[str, str, str, str, str]:
    return (case.mode, case.model, case.head, case.device, case.dtype)


@dataclass
class OomRecord:
    """Items that ran out of memory, to skip the same model's larger items up front (--tbench-oom-skip)."""

    failures: dict[tuple[str, str, str, str, str], list[BenchCase]] = field(default_factory=dict)

    def add(self, case: BenchCase) -> None:
        self.failures.setdefault(_family(case), []).append(case)

    def covering(self, case: BenchCase) -> str | None:
        """Why ``case`` cannot fit: an item of the same model, mode, device and dtype at most as large in
        every dimension already ran out of memory."""
        for failed in self.failures.get(_family(case), []):
            if (
                case.batch_size >= failed.batch_size
                and case.seq_len >= failed.seq_len
                and case.new_tokens >= failed.new_tokens
            ):
                return (
                    f"out of memory expected: {case.model} already ran out of memory at batch "
                    f"{failed.batch_size} x seq {failed.seq_len} on {case.device}; this item is no smaller"
                )
        return None
