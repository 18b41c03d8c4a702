"""The end-of-session table per mode, in the spirit of the classic INFERENCE - SPEED - RESULT tables."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tabulate import tabulate

from .results import ItemResult

_MIB = 1024 * 1024

Column = tuple[str, Callable[[ItemResult], Any]]


def _num(key: str, scale: float = 1.0, digits: int = 2) -> Callable[[ItemResult], str]:
    def cell(result: ItemResult) -> str:
        value = result.extra_info.get(key)
        return "-" if value is None else f"{value * scale:,.{digits}f}"

    return cell


_LEADING: list[Column] = [
    ("model", lambda r: r.case.model),
    ("batch", lambda r: r.case.batch_size),
    ("seq", lambda r: r.case.seq_len),
]
_TRAILING: list[Column] = [
    ("device", lambda r: r.case.device),
    ("dtype", lambda r: r.case.dtype),
]
_MEMORY: list[Column] = [
    ("peak mem (MiB)", _num("peak_memory_bytes", 1 / _MIB, 1)),
    ("item +mem (MiB)", _num("peak_memory_increase_bytes", 1 / _MIB, 1)),
]

COLUMNS: dict[str, list[Column]] = {
    "forward": [
        *_LEADING,
        *_TRAILING,
        ("median (ms)", _num("median_s", 1000, 3)),
        ("samples/s", _num("throughput_samples_per_s", digits=1)),
        ("tokens/s", _num("throughput_tokens_per_s", digits=0)),
        *_MEMORY,
    ],
    "generate": [
        *_LEADING,
        ("new", lambda r: r.case.new_tokens),
        *_TRAILING,
        ("TTFT (ms)", _num("ttft_mean_s", 1000, 1)),
        ("ms/token", _num("decode_token_latency_mean_s", 1000, 2)),
        ("decode tok/s", _num("decode_tokens_per_s", digits=1)),
        ("e2e tok/s", _num("e2e_tokens_per_s", digits=1)),
        ("total (ms)", _num("total_time_mean_s", 1000, 1)),
        *_MEMORY,
    ],
    "train": [
        *_LEADING,
        *_TRAILING,
        ("precision", lambda r: r.extra_info.get("train_precision", "")),
        ("step (ms)", _num("median_s", 1000, 2)),
        ("samples/s", _num("throughput_samples_per_s", digits=1)),
        ("tokens/s", _num("throughput_tokens_per_s", digits=0)),
        *_MEMORY,
        ("params (MiB)", _num("parameter_bytes", 1 / _MIB, 1)),
        ("optim state (MiB)", _num("optimizer_state_bytes", 1 / _MIB, 1)),
    ],
}


def summary_tables(results: Iterable[ItemResult]) -> list[tuple[str, str]]:
    """(title, table) per mode, rows in run order."""
    by_mode: dict[str, list[ItemResult]] = {}
    for result in results:
        by_mode.setdefault(result.case.mode, []).append(result)
    tables = []
    for mode, rows in by_mode.items():
        columns = COLUMNS.get(mode, COLUMNS["forward"])
        body = [[cell(r) for _, cell in columns] for r in rows]
        table = tabulate(body, [name for name, _ in columns], tablefmt="simple", disable_numparse=True)
        tables.append((f"tbench {mode.upper()} - SPEED AND MEMORY", table))
    return tables


LEGEND = (
    "peak mem: CUDA max allocated on GPU items, process peak RSS on CPU items; "
    "item +mem: that peak over the memory in use when the item started. "
    "generate: TTFT = prefill time, ms/token = mean decode step, times are means over measured rounds."
)
