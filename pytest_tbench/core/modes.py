"""The one table of modes: for each, what the sweep, the presets, the model loader, the terminal summary and
the report need to know about it. How a mode's work is built lives in ``scenarios``. A built-in mode is an
entry here and a scenario there; a user's mode is added to both at runtime by ``scenarios.register_mode``
(from a conftest.py), so every reader looks a mode up in ``MODES`` when it is called, never in a copy made at
import.

Torch-free: the report reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pytest_tbench.core.metric_table import (
    ACHIEVED,
    DECODE_TOKENS_PER_S_METRIC,
    E2E_TOKENS_PER_S_METRIC,
    ENERGY_PER_TOKEN,
    ITEM_MEMORY,
    LATENCY,
    MBU_METRIC,
    MFU_METRIC,
    OPTIMIZER_STATE,
    PARAMETERS,
    PEAK_MEMORY,
    PREFILL,
    SAMPLES_PER_S,
    TOKEN_LATENCY,
    TOKENS_PER_S,
    TOTAL,
    TRAIN_PRECISION,
    HasMetrics,
    Metric,
)

# A forward or train call is far shorter than a generate call, so one preset "run" (one repeat of the
# grid point in the seed suite) becomes this many measured rounds there; generate uses runs as rounds.
ROUNDS_PER_RUN = 10

# The mode of a test that takes the tbench fixture and names none.
DEFAULT_MODE = "forward"


class TableItem(HasMetrics, Protocol):
    """What a table row is read from: an item record (terminal summary) or a report row."""

    def field(self, key: str) -> Any: ...


@dataclass(frozen=True)
class Column:
    header: str
    key: str  # a case coordinate or an extra_info key
    metric: Metric | None = None  # a number, scaled and formatted as the metric says

    def cell(self, item: TableItem) -> str:
        if self.metric is not None:
            return self.metric.format(self.metric.value(item))
        value = item.field(self.key)
        return "n/a" if value is None else str(value)


def metric_column(metric: Metric, header: str | None = None) -> Column:
    return Column(header or metric.label, metric.key, metric)


ITEM = Column("item", "fullname")
MODEL = Column("model", "model")
_COORDS = (Column("batch", "batch_size"), Column("input (tokens)", "seq_len"))
_TARGET = (Column("device", "device"), Column("dtype", "dtype"))
_MEMORY = (metric_column(PEAK_MEMORY, "peak mem (MiB)"), metric_column(ITEM_MEMORY, "item +mem (MiB)"))
# How close to the device's compute limit (MFU needs a peak: known GPUs, or --tbench-peak-tflops).
_COMPUTE = (metric_column(ACHIEVED, "TFLOP/s"), metric_column(MFU_METRIC, "MFU %"))


@dataclass(frozen=True)
class Mode:
    name: str
    default_head: str  # the model head loaded when a test does not name one
    throughput: Metric  # the throughput its plots and summaries rank by
    columns: tuple[Column, ...]  # its result table, in the terminal summary and the report alike
    generates: bool = False  # rounds are whole requests, and item ids carry the new tokens
    rounds_per_run: int = ROUNDS_PER_RUN  # measured rounds per preset "run"
    own_model: bool = False  # loads a copy of its own (train mutates the weights)
    plots: tuple[str, ...] = ()  # plot kinds of its own, beside those every mode gets


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode(
            "forward",
            "base",
            TOKENS_PER_S,
            (
                *_COORDS,
                *_TARGET,
                metric_column(LATENCY, "median (ms)"),
                metric_column(SAMPLES_PER_S, "samples/s"),
                metric_column(TOKENS_PER_S, "tokens/s"),
                *_COMPUTE,
                *_MEMORY,
            ),
        ),
        # A generate request's throughput is end to end (prefill + decode); other modes count input tokens.
        Mode(
            "generate",
            "lm",
            E2E_TOKENS_PER_S_METRIC,
            (
                *_COORDS,
                Column("new (tokens)", "new_tokens"),
                *_TARGET,
                metric_column(PREFILL, "TTFT (ms)"),
                metric_column(TOKEN_LATENCY, "ms/token"),
                metric_column(DECODE_TOKENS_PER_S_METRIC, "decode tokens/s"),
                metric_column(E2E_TOKENS_PER_S_METRIC, "e2e tokens/s"),
                metric_column(TOTAL, "total (ms)"),
                metric_column(MBU_METRIC, "MBU %"),
                metric_column(ENERGY_PER_TOKEN, "mJ/token"),
                *_MEMORY,
            ),
            generates=True,
            rounds_per_run=1,
            plots=("prefill_decode",),
        ),
        Mode(
            "train",
            "lm",
            TOKENS_PER_S,
            (
                *_COORDS,
                *_TARGET,
                Column("precision", TRAIN_PRECISION),
                metric_column(LATENCY, "step (ms)"),
                metric_column(SAMPLES_PER_S, "samples/s"),
                metric_column(TOKENS_PER_S, "tokens/s"),
                *_COMPUTE,
                *_MEMORY,
                metric_column(PARAMETERS, "params (MiB)"),
                metric_column(OPTIMIZER_STATE, "optim state (MiB)"),
            ),
            own_model=True,
        ),
    )
}

# A mode this version does not know (a run saved by another version) still shows what every item has.
OTHER_COLUMNS = (
    ITEM,
    *_COORDS,
    *_TARGET,
    metric_column(LATENCY, "median (ms)"),
    metric_column(TOKENS_PER_S, "tokens/s"),
    *_MEMORY,
)


def mode_names() -> tuple[str, ...]:
    """Every mode this session knows, built-in ones first, then those registered, in registration order."""
    return tuple(MODES)


def columns_for(mode: str) -> tuple[Column, ...]:
    known = MODES.get(mode)
    return known.columns if known is not None else OTHER_COLUMNS


def throughput(mode: str) -> Metric:
    known = MODES.get(mode)
    return known.throughput if known is not None else TOKENS_PER_S


def generates(mode: str) -> bool:
    known = MODES.get(mode)
    return known is not None and known.generates


def extra_plots(mode: str) -> tuple[str, ...]:
    known = MODES.get(mode)
    return known.plots if known is not None else ()


def rounds_for_mode(runs: int, mode: str) -> int:
    return runs * MODES[mode].rounds_per_run
