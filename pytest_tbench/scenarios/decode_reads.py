"""What one decode step reads from memory, for the decode bandwidth (``measure/limits.py``).

A decode step feeds one token per row through the model: it reads every weight it multiplies with once (the
matmul parameters: all but the embedding tables, of which it reads one row per token; a tied LM head reads
its whole table), and every layer's cached keys and values of the positions it attends to. Counted:

- ``decode_weights_read_bytes``: the matmul parameters' bytes (``trackers.flops.matmul_parameters``);
- ``decode_kv_read_bytes``: the KV cache at the mean context of the decode steps: step j (1 to new_tokens-1)
  attends to seq_len + j positions (the prompt, the tokens before it and itself), a sliding-window layer to at
  most its window; each position holds 2 x kv_heads x head_dim values per layer per row, in the model's dtype.

Not counted: activations (kilobytes per token), the embedding rows, and any padding a static cache's kernels
read beyond the attended positions. So the figure is a lower bound of the traffic, and MBU a lower bound of
the bandwidth used. Only decoder-only models with a standard (per-head) KV cache are counted; others say why.
Torch-free.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from pytest_tbench.core.metric_table import (
    DECODE_BANDWIDTH_UNAVAILABLE,
    DECODE_KV_READ_BYTES,
    DECODE_WEIGHTS_READ_BYTES,
)

_FULL = ("full_attention",)
_WINDOWED = ("sliding_attention", "chunked_attention")


@dataclass(frozen=True)
class KvLayout:
    """Per decoder layer, how many positions it keeps (None: all of them); and per position, its bytes."""

    windows: tuple[int | None, ...]
    bytes_per_position: int  # one layer, one row: keys and values

    def read_bytes(self, context: int) -> int:
        """Bytes one row's step reads from the cache when ``context`` positions are attended."""
        return sum(
            self.bytes_per_position * (context if window is None else min(context, window))
            for window in self.windows
        )


def kv_layout(config: Any, element_size: int) -> KvLayout | str:
    """The KV cache layout ``config`` implies, or why it cannot be told from the config."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder: a decode step also reads the cross-attention cache; not counted"
    if getattr(config, "kv_lora_rank", None):
        return "compressed (MLA) KV cache: its bytes per position are not 2 x heads x head_dim; not counted"
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(layers, int) or not isinstance(heads, int) or heads <= 0:
        return f"{type(config).__name__} has no num_hidden_layers or num_attention_heads: no KV cache counted"
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", 0) // heads
    if not head_dim:
        return f"{type(config).__name__} names no head_dim or hidden_size: no KV cache to count"
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    windows: list[int | None] = []
    if layer_types:
        for kind in layer_types:
            if kind in _FULL:
                windows.append(None)
            elif kind in _WINDOWED and isinstance(window, int):
                windows.append(window)
            else:
                return f"layer type {kind!r}: its cache is not a standard KV cache; not counted"
    elif isinstance(window, int) and getattr(config, "use_sliding_window", True):
        windows = [window] * layers
    else:
        windows = [None] * layers
    return KvLayout(tuple(windows), 2 * kv_heads * head_dim * element_size)


def decode_reads(
    config: Any,
    weights_bytes: int,
    element_size: int,
    batch: int,
    seq_len: int,
    new_tokens: int,
    use_cache: bool,
) -> dict[str, Any]:
    """The extra_info entries of what a decode step reads, or the reason there are none."""
    if not use_cache:
        return {
            DECODE_BANDWIDTH_UNAVAILABLE: "use_cache is off: every step recomputes the whole sequence, which "
            "is not the memory-bound decode a bandwidth describes"
        }
    if new_tokens < 2:
        return {DECODE_BANDWIDTH_UNAVAILABLE: "one new token: generation has no decode step"}
    layout = kv_layout(config, element_size)
    if isinstance(layout, str):
        return {DECODE_BANDWIDTH_UNAVAILABLE: layout}
    per_row = statistics.fmean(layout.read_bytes(seq_len + step) for step in range(1, new_tokens))
    return {DECODE_WEIGHTS_READ_BYTES: weights_bytes, DECODE_KV_READ_BYTES: round(batch * per_row)}
