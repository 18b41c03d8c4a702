"""Out-of-memory: which errors mean it, what an item that hit it says, and skipping what cannot fit either."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

import torch

from .cases import BenchCase
from .devices import empty_cache

OOM_ERRORS: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)


def is_out_of_memory(exc: BaseException) -> bool:
    # torch's CPU allocator reports a failed allocation as a RuntimeError, not a MemoryError.
    return isinstance(exc, OOM_ERRORS) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


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
