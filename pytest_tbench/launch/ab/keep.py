"""Whether a pair's two workers stay, holding their model for its next item, or end after this one.

A kept worker saves the next item a model load and a fresh process on each side (two loads per model and
pair, not per item), but holds the model's memory while the other pairs measure: with P pairs, up to 2P
copies at once. A pair's workers are kept only while the device has room for another pair beside them:
free memory (as the workers read it after the item, every process' use counted) of at least two workers at
this item's peak plus a tenth of the device. An item that runs out of memory all the same is measured again
with the kept workers ended (launcher.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_tbench.launch.worker import Outcome
from pytest_tbench.machine.devices import is_cuda

GIB = 1 << 30
CUDA_CONTEXT_BYTES = GIB  # a worker's CUDA context and libraries, which no allocator figure counts
SPARE_SHARE = 0.1  # of the device's memory, left free beyond the next pair's needs


def footprint(outcome: Outcome, device: str) -> int | None:
    """What one worker holds at its item's peak: its whole RSS on the CPU (its model, libraries and the
    item's activations), the allocator's reserved peak and a context on a GPU; None where unknown."""
    if is_cuda(device):
        reserved = outcome.info.get("cuda_max_reserved_bytes")
        return None if reserved is None else int(reserved) + CUDA_CONTEXT_BYTES
    peak = outcome.info.get("peak_rss_bytes")
    return None if peak is None else int(peak)


def room_to_keep(outcomes: Sequence[Outcome], device: str) -> bool:
    """Whether the pair whose ``outcomes`` these are can stay while another pair measures."""
    rooms = [outcome.room for outcome in outcomes]
    needs = [footprint(outcome, device) for outcome in outcomes]
    if any(room is None for room in rooms) or any(need is None for need in needs):
        return False
    free = min(room[0] for room in rooms if room is not None)
    total = max(room[1] for room in rooms if room is not None)
    need = max(n for n in needs if n is not None)
    return free >= 2 * need + SPARE_SHARE * total
