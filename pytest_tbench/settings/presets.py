"""The sweep presets of the LLM profiling suite this plugin grew from, unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_tbench.core.modes import ROUNDS_PER_RUN, rounds_for_mode

__all__ = ["DEFAULT_PRESET", "PRESETS", "ROUNDS_PER_RUN", "Preset", "rounds_for_mode"]


def _powers_of_two(low: int, high: int) -> tuple[int, ...]:
    return tuple(2**k for k in range(low.bit_length() - 1, high.bit_length()) if low <= 2**k <= high)


@dataclass(frozen=True)
class Preset:
    name: str
    batch_sizes: tuple[int, ...]
    seq_lens: tuple[int, ...]
    new_tokens: int
    runs: int
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("quick_test", (1, 2), (32, 64), 20, 1, "smoke test"),
        Preset("small_scale", (1, 2), (32, 64, 128), 30, 2, "small sweep"),
        Preset("medium_scale", _powers_of_two(1, 32), _powers_of_two(32, 2048), 50, 3, "medium sweep"),
        Preset("large_scale", _powers_of_two(1, 256), _powers_of_two(64, 65536), 100, 5, "GPU-class sweep"),
        Preset("batch_size_study", _powers_of_two(1, 256), (256,), 50, 5, "scaling with batch size"),
        Preset("input_length_study", (1,), _powers_of_two(16, 65536), 50, 5, "scaling with input length"),
    )
}

DEFAULT_PRESET = "quick_test"
