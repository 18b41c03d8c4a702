"""The end-of-session table per mode, in the spirit of the classic INFERENCE - SPEED - RESULT tables."""

from __future__ import annotations

from collections.abc import Iterable

from tabulate import tabulate

from .results import ItemResult

_MIB = 1024 * 1024


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:,.{digits}f}"


def summary_tables(results: Iterable[ItemResult]) -> list[tuple[str, str]]:
    """(title, table) per mode, rows in run order."""
    by_mode: dict[str, list[ItemResult]] = {}
    for result in results:
        by_mode.setdefault(result.case.mode, []).append(result)
    tables = []
    for mode, rows in by_mode.items():
        body = []
        for r in rows:
            info = r.extra_info
            body.append(
                [
                    r.case.model,
                    r.case.batch_size,
                    r.case.seq_len,
                    r.case.device,
                    r.case.dtype,
                    _fmt(r.median_s, 1000, 3),
                    _fmt(info.get("throughput_samples_per_s"), digits=1),
                    _fmt(info.get("throughput_tokens_per_s"), digits=0),
                    _fmt(info.get("peak_memory_bytes"), 1 / _MIB, 1),
                    _fmt(info.get("peak_memory_increase_bytes"), 1 / _MIB, 1),
                ]
            )
        headers = [
            "model",
            "batch",
            "seq",
            "device",
            "dtype",
            "median (ms)",
            "samples/s",
            "tokens/s",
            "peak mem (MiB)",
            "item +mem (MiB)",
        ]
        tables.append(
            (f"tbench {mode.upper()} - SPEED AND MEMORY", tabulate(body, headers, tablefmt="simple"))
        )
    return tables


LEGEND = (
    "peak mem: CUDA max allocated on GPU items, process peak RSS on CPU items; "
    "item +mem: that peak over the memory in use when the item started."
)
