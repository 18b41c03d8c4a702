"""One measured item as a typed record: its case, its raw rounds and how they split over processes, and its
metrics, read from and written to the ``extra_info`` of its pytest-benchmark JSON entry.

The JSON is the public contract, so the record keeps every ``extra_info`` entry it does not model under its
own key (``metrics``), and ``to_extra_info`` gives back exactly what ``from_extra_info`` read. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pytest_tbench.core.axes import (
    ATTN_AUTO,
    BACKEND_PYTORCH,
    COMPILE_OFF,
    DEVICE_MAP_NONE,
    QUANT_NONE,
    TP_NONE,
)
from pytest_tbench.core.metric_table import BASELINE_RUN_ROUNDS, MEDIAN_S, PROCESS_ROUNDS

# Where pytest-benchmark's ``params`` of an item hold its case (BenchCase.as_params()).
CASE_PARAM = "tbench_case"


@dataclass(frozen=True)
class Case:
    """An item's coordinates: what runs (mode, model, head), on what input and where, and how (its variant
    axes, ``axes.AXES``: their defaults mean "as before", so records written without them still read)."""

    mode: str
    model: str
    head: str
    batch_size: int
    seq_len: int
    device: str
    dtype: str
    new_tokens: int = 0
    attn_implementation: str = ATTN_AUTO
    compile: str = COMPILE_OFF
    quantization: str = QUANT_NONE
    backend: str = BACKEND_PYTORCH
    # The input off the token axis, as the id names it (models/families.py): "img224", "audio30s"; "" for
    # text. An item whose family has no token axis has seq_len 0.
    media: str = ""
    device_map: str = DEVICE_MAP_NONE  # from_pretrained's device_map: the model spread over GPUs
    tp: str = TP_NONE  # tensor parallel ranks, one process each

    def as_params(self) -> dict[str, Any]:
        """JSON-friendly form; it is what pytest-benchmark stores as the item's ``params``."""
        return asdict(self)


CASE_FIELDS = tuple(f.name for f in fields(Case))


def number(value: Any) -> float | None:
    """A finite number as float; None for anything else (text, bools, NaN, infinities, missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_value(extra: Mapping[str, Any], key: str, stats_median_s: float | None) -> float | None:
    """A numeric extra_info value; ``median_s`` falls back to pytest-benchmark's median (runs saved before
    tbench recorded it)."""
    value = number(extra.get(key))
    if value is None and key == MEDIAN_S:
        return stats_median_s
    return value


def _case_of(params: Any, extra_info: Mapping[str, Any]) -> Case | None:
    """The case from ``params`` (the item's, or its case alone), else from the coordinates ``extra_info``
    repeats; None where neither says (hand-made entries)."""
    found = params.get(CASE_PARAM, params) if isinstance(params, Mapping) else None
    if isinstance(found, Mapping):
        try:
            return Case(**{k: found[k] for k in CASE_FIELDS if k in found})
        except TypeError:
            pass
    try:
        coords = {k: extra_info[k] for k in CASE_FIELDS if k in extra_info}
        return Case(**{"head": "", **coords})
    except TypeError:
        return None


@dataclass(frozen=True)
class ItemRecord:
    case: Case | None
    samples: tuple[float, ...] = ()  # the raw rounds in seconds (pytest-benchmark's stats.data)
    # Rounds per worker process, in the order of ``samples`` (--tbench-processes, pooled baselines); () for
    # one process.
    process_rounds: tuple[int, ...] = ()
    # Every other extra_info entry, keyed as in the JSON (metric_table names the keys); not to be mutated.
    metrics: Mapping[str, Any] = field(default_factory=dict)
    stats_median_s: float | None = None  # pytest-benchmark's median, for entries without raw rounds
    fullname: str = ""

    @classmethod
    def from_extra_info(
        cls,
        params: Mapping[str, Any] | None,
        extra_info: Mapping[str, Any] | None,
        stats: Mapping[str, Any] | None = None,
        fullname: str = "",
    ) -> ItemRecord:
        info = dict(extra_info) if isinstance(extra_info, Mapping) else {}
        stats = stats if isinstance(stats, Mapping) else {}
        rounds = info.pop(PROCESS_ROUNDS, None)
        median = stats.get("median")
        return cls(
            case=_case_of(params, info),
            samples=tuple(float(x) for x in stats.get("data") or []),
            process_rounds=tuple(int(n) for n in rounds) if isinstance(rounds, list) else (),
            metrics=info,
            stats_median_s=float(median) if isinstance(median, (int, float)) else None,
            fullname=fullname,
        )

    @classmethod
    def from_bench(cls, bench: Mapping[str, Any]) -> ItemRecord:
        """The record of one entry of a run's ``benchmarks``."""
        return cls.from_extra_info(
            bench.get("params"), bench.get("extra_info"), bench.get("stats"), str(bench.get("fullname", ""))
        )

    def to_extra_info(self) -> dict[str, Any]:
        info = dict(self.metrics)
        if self.process_rounds:
            info[PROCESS_ROUNDS] = list(self.process_rounds)
        return info

    def metric(self, key: str) -> float | None:
        return metric_value(self.metrics, key, self.stats_median_s)

    def field(self, key: str) -> Any:
        """A case coordinate by name, else the raw extra_info value (None where missing)."""
        if key == "fullname":
            return self.fullname
        if self.case is not None and key in CASE_FIELDS:
            return getattr(self.case, key)
        return self.metrics.get(key)

    def floats(self, key: str) -> list[float]:
        """A per-round extra_info list as floats ([] where missing)."""
        return [float(x) for x in self.metrics.get(key) or []]

    def rounds_per_process(self, count: int) -> list[int]:
        """Rounds per worker process for ``count`` per-round values: ``process_rounds`` where they account
        for every value, else one process ([] without values)."""
        if self.process_rounds and sum(self.process_rounds) == count:
            return list(self.process_rounds)
        return [count] if count else []

    def by_run(self, values: list[float]) -> list[list[float]]:
        """Per-round values split by the saved run that measured them, for a baseline pooled from several
        (``baseline_run_rounds``); [] where the record is one run."""
        counts = [int(n) for n in self.metrics.get(BASELINE_RUN_ROUNDS) or []]
        if len(counts) < 2 or sum(counts) != len(values):
            return []
        runs, start = [], 0
        for count in counts:
            runs.append(values[start : start + count])
            start += count
        return runs

    def by_process(self, values: list[float]) -> tuple[tuple[float, ...], ...]:
        """Per-round values split by the process that measured them; () for a run measured in one process."""
        counts = self.rounds_per_process(len(values))
        if len(counts) < 2:
            return ()
        groups, start = [], 0
        for count in counts:
            groups.append(tuple(values[start : start + count]))
            start += count
        return tuple(groups)
