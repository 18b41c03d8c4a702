"""Timestamps inside one call (the start, each generation step, the end), read once the call is done.

On CUDA each stamp is an event recorded on the item's device stream, so stamping never waits for the GPU; the
events are read after the round has synchronised. On CPU a stamp is ``time.perf_counter()``. A clock holds one
round only: a new one is made for every round, so no stamp crosses from one call to the next.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch

from pytest_tbench.machine.devices import is_cuda


@dataclass(frozen=True)
class RoundTiming:
    """One call's times in seconds: the first step (prefill) and each later step, relative to the start."""

    first_step_s: float
    step_intervals_s: tuple[float, ...]
    total_s: float
    steps: int


class StepClock:
    def __init__(self, device: str) -> None:
        self._cuda = is_cuda(device)
        # The stream the item's work is queued on. A bare ``Event.record()`` records on the *current* device's
        # stream (cuda:0 unless something set it), so an item on cuda:1 would stamp when the host queued the
        # work rather than when the GPU ran it, and would open a context on GPU 0. ``current_stream`` of the
        # item's device reads that device's stream without making it current.
        self._stream = torch.cuda.current_stream(torch.device(device)) if self._cuda else None
        self._stamps: list[float | torch.cuda.Event] = []

    def stamp(self) -> None:
        if self._stream is not None:
            event = torch.cuda.Event(enable_timing=True)  # made lazily on the stream's device at record
            event.record(self._stream)
            self._stamps.append(event)
        else:
            self._stamps.append(time.perf_counter())

    def timing(self) -> RoundTiming:
        """Call after the device is synchronised: the stamps are start, one per step, end."""
        if len(self._stamps) < 3:
            raise RuntimeError(
                f"a round needs start, at least one step and end stamps; got {len(self._stamps)}"
            )
        seconds = self._seconds()
        start, steps, end = seconds[0], seconds[1:-1], seconds[-1]
        return RoundTiming(
            first_step_s=steps[0] - start,
            step_intervals_s=tuple(b - a for a, b in itertools.pairwise(steps)),
            total_s=end - start,
            steps=len(steps),
        )

    def _seconds(self) -> list[float]:
        if not self._cuda:
            return [float(s) for s in self._stamps]  # type: ignore[arg-type]
        first = self._stamps[0]
        assert isinstance(first, torch.cuda.Event)
        return [0.0] + [first.elapsed_time(e) / 1000 for e in self._stamps[1:]]  # type: ignore[arg-type]
