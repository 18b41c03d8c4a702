"""Saved runs flattened into one row per item, tolerant of what other versions and machines wrote."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tbench.core.axes import variant_label
from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.record import CASE_PARAM, ItemRecord, metric_value, number
from pytest_tbench.core.run_file import load_run


def slug(text: str) -> str:
    """A piece of a file name from run data (a mode, a model): no path separators, no leading dot."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-.") or "x"


Scalar = str | int | float | bool

# pytest-benchmark's per-call statistics, in seconds except the round count.
STATS_KEYS = ("min", "max", "mean", "median", "stddev", "iqr", "rounds")

# Items written without params.tbench_case (older drafts, hand-made files) still carry the item id.
_ID_RE = re.compile(
    r"\[(?P<model>.+?)-b(?P<batch>\d+)-s(?P<seq>\d+)(?:-n(?P<new>\d+))?-(?P<device>[^-]+)-(?P<dtype>[^-\]]+)"
    r"(?:-\w+:[^\]]*)?\]"  # variant axes (axes.variant_id), read from the case
)


def _int_or_none(value: Any) -> int | None:
    found = number(value)
    return int(found) if found is not None else None


@dataclass(frozen=True)
class Row:
    """One measured item. Numbers that the JSON lacks are None, never 0: a report shows them as n/a."""

    run: str
    fullname: str
    mode: str
    model: str
    head: str
    batch_size: int | None
    seq_len: int | None
    device: str
    dtype: str
    new_tokens: int | None
    stats: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Scalar] = field(default_factory=dict)
    variant: str = ""  # the item's non-default variant axes (axes.variant_label); "" for none

    def metric(self, key: str) -> float | None:
        return metric_value(self.extra, key, self.stats.get("median"))

    def field(self, key: str) -> Any:
        """A coordinate (or the item's name) by name, else the extra_info value: what a table column reads."""
        if key in _ROW_FIELDS:
            return getattr(self, key)
        return self.extra.get(key)

    @property
    def group(self) -> tuple[str, str, str, str, str, str, int | None, str]:
        """Everything that identifies an item except batch size and input length: one grid of a plot."""
        return (
            self.run,
            self.mode,
            self.model,
            self.head,
            self.device,
            self.dtype,
            self.new_tokens,
            self.variant,
        )

    @property
    def item(self) -> tuple[str, str, int | None, int | None, str, str, int | None, str]:
        """The coordinates two runs or two models are compared on (the same work on the same device, run the
        same way)."""
        return (
            self.mode,
            self.head,
            self.batch_size,
            self.seq_len,
            self.device,
            self.dtype,
            self.new_tokens,
            self.variant,
        )

    @property
    def label(self) -> str:
        new = f" n{self.new_tokens}" if self.new_tokens else ""
        variant = f" {self.variant}" if self.variant else ""
        # An image or audio item has no token length (0) but a fixed input (models/families.py): name that.
        media = str(self.extra.get("media") or "")
        length = "" if self.seq_len == 0 and media else f"s{self.seq_len}"
        shape = " ".join(part for part in (length, media) if part)
        return f"b{self.batch_size} {shape}{new}{variant}"


@dataclass
class Run:
    label: str
    path: Path | None
    data: dict[str, Any]
    rows: list[Row]

    @property
    def environment(self) -> dict[str, Any]:
        info = self.data.get("machine_info")
        tbench = info.get("tbench") if isinstance(info, dict) else None
        return tbench if isinstance(tbench, dict) else {}

    @property
    def not_measured(self) -> list[dict[str, str]]:
        entries = (self.data.get("tbench") or {}).get("not_measured") or []
        return [e for e in entries if isinstance(e, dict)]

    @property
    def commit(self) -> str:
        info = self.data.get("commit_info") or {}
        commit = str(info.get("id") or "")[:10]
        return commit + (" (dirty)" if commit and info.get("dirty") else "")


# What identifies an item within a run, but its variant: the identity columns of the CSVs.
ITEM_COORDINATES = ("mode", "model", "head", "batch_size", "seq_len", "new_tokens", "device", "dtype")

_ROW_FIELDS = (
    "fullname",
    "mode",
    "model",
    "head",
    "batch_size",
    "seq_len",
    "device",
    "dtype",
    "new_tokens",
    "variant",
)


def row_of(bench: dict[str, Any], run: str) -> Row:
    params = bench.get("params") or {}
    case = params.get(CASE_PARAM) if isinstance(params, dict) else None
    case = case if isinstance(case, dict) else {}
    fullname = str(bench.get("fullname") or bench.get("name") or "?")
    found = _ID_RE.search(fullname)
    parsed = found.groupdict() if found else {}

    def coord(key: str, parsed_key: str) -> Any:
        return case.get(key, parsed.get(parsed_key))

    stats_in = _dict(bench.get("stats"))
    stats = {k: v for k in STATS_KEYS if (v := number(stats_in.get(k))) is not None}
    record = ItemRecord.from_extra_info(
        params if isinstance(params, dict) else None, _dict(bench.get("extra_info"))
    )
    extra = {
        str(k): v
        for k, v in record.to_extra_info().items()
        if isinstance(v, (str, int, float, bool)) and _finite_or_text(v)
    }
    entry = record.to_extra_info().get("benchmark_entry")
    if isinstance(entry, dict) and "index" in entry:
        # A benchmark list item: its entry as one text column ("2 roberta-large"), to group the CSV rows by.
        extra["benchmark_entry"] = f"{entry['index']} {entry.get('name', '')}".strip()
    return Row(
        run=run,
        fullname=fullname,
        mode=str(case.get("mode") or "unknown"),
        model=str(coord("model", "model") or "?"),
        head=str(case.get("head") or ""),
        batch_size=_int_or_none(_as_int(coord("batch_size", "batch"))),
        seq_len=_int_or_none(_as_int(coord("seq_len", "seq"))),
        device=str(coord("device", "device") or "?"),
        dtype=str(coord("dtype", "dtype") or "?"),
        new_tokens=_int_or_none(_as_int(coord("new_tokens", "new"))),
        stats=stats,
        extra=extra,
        variant=variant_label(record.case.as_params()) if record.case is not None else "",
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _finite_or_text(value: Scalar) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def load_runs(paths: list[Path]) -> list[Run]:
    """The runs at ``paths``, labelled by file name (made unique); OptionError names a file that is not a
    run."""
    runs: list[Run] = []
    labels: set[str] = set()
    for path in paths:
        data = load_run(path, role="run")
        label = path.stem
        number = 2
        while label in labels:
            label, number = f"{path.stem}-{number}", number + 1
        labels.add(label)
        runs.append(run_of(data, label, path))
    return runs


def run_of(data: dict[str, Any], label: str, path: Path | None = None) -> Run:
    benches = data.get("benchmarks")
    if not isinstance(benches, list):
        raise OptionError(f"{path or label} is not a pytest-benchmark run: it has no 'benchmarks' list")
    return Run(label, path, data, [row_of(b, label) for b in benches if isinstance(b, dict)])


def sort_key(row: Row) -> tuple[Any, ...]:
    return (row.run, row.mode, row.model, row.device, row.dtype, row.batch_size or 0, row.seq_len or 0)
