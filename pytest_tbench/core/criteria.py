"""``--tbench-compare-fail`` expressions: ``METRIC:THRESHOLD%``, optionally ``:mode=M`` / ``:model=GLOB``.

Examples: ``time:5%``, ``peak_memory:3%``, ``tokens_per_s:5%:mode=generate``, ``ttft:10%:model=gpt2*``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, get_args

from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.metric_table import GateMetric
from pytest_tbench.core.record import ItemRecord

# The metrics a criterion may name: the metric table's gate kinds, in its order.
METRICS: tuple[str, ...] = get_args(GateMetric)

# Used when --tbench-compare is given without --tbench-compare-fail.
DEFAULT_CRITERIA = ("time:5%", "tokens_per_s:5%", "ttft:10%", "peak_memory:5%")

_EXPR = re.compile(r"^(?P<metric>[a-z_]+):(?P<threshold>\d+(\.\d+)?)%(?::(?P<scope>.+))?$")


@dataclass(frozen=True)
class Criterion:
    metric: str
    threshold: float  # a fraction: 0.05 for 5%
    mode: str | None = None
    model: str | None = None

    def applies_to(self, item: ItemRecord | dict[str, Any]) -> bool:
        info = (item if isinstance(item, ItemRecord) else ItemRecord.from_bench(item)).metrics
        if self.mode is not None and info.get("mode") != self.mode:
            return False
        return self.model is None or fnmatch.fnmatchcase(str(info.get("model", "")), self.model)

    def __str__(self) -> str:
        scope = f":mode={self.mode}" if self.mode else ""
        scope += f":model={self.model}" if self.model else ""
        return f"{self.metric}:{self.threshold * 100:g}%{scope}"


def parse_criterion(text: str) -> Criterion:
    match = _EXPR.match(text.strip())
    if match is None or match["metric"] not in METRICS:
        raise OptionError(
            f"bad compare-fail expression {text!r}; use METRIC:N% with METRIC one of {', '.join(METRICS)}, "
            "optionally followed by :mode=MODE and/or :model=GLOB (e.g. time:5%:mode=generate)"
        )
    scope: dict[str, str] = {}
    for part in (match["scope"] or "").split(":") if match["scope"] else []:
        key, _, value = part.partition("=")
        if key not in ("mode", "model") or not value:
            raise OptionError(f"bad scope {part!r} in {text!r}; use mode=MODE or model=GLOB")
        scope[key] = value
    return Criterion(match["metric"], float(match["threshold"]) / 100, scope.get("mode"), scope.get("model"))


def parse_criteria(value: Any) -> tuple[Criterion, ...]:
    texts = [value] if isinstance(value, str) else list(value)
    return tuple(parse_criterion(part) for text in texts for part in re.split(r"[,\s]+", str(text)) if part)
