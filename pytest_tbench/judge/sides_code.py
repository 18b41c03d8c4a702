"""The model code of an A/B item's two sides, compared: which functions (and source files) differ between the
base and the current side, so that an A/B of two revisions says up front whether it measured a change of model
code at all. Torch-free: it reads the sides' ``model_code`` fingerprints (``models/code.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pytest_tbench.core.metric_table import AB
from pytest_tbench.models.code import MODEL_CODE, ModelCode, differences


def compare_sides(base_info: Mapping[str, Any], current_info: Mapping[str, Any]) -> dict[str, Any]:
    """``ab.model_code`` of an item: whether the sides ran identical model code, and what differs."""
    base, current = base_info.get(MODEL_CODE), current_info.get(MODEL_CODE)
    if not isinstance(base, Mapping) or not isinstance(current, Mapping):
        return {}
    functions, files = differences(ModelCode.from_json(base), ModelCode.from_json(current))
    return {"identical": not functions, "functions": functions, "files": files}


def code_line(found: Mapping[str, Any]) -> str:
    """E.g. "model code differs between sides: GPT2MLP.forward (mymodel.py)", or "identical model code"."""
    if not found:
        return ""
    files = found.get("files") or []
    also = f"; source files differ: {', '.join(files)}" if files else ""
    if found.get("identical"):
        return f"identical model code on both sides{also}"
    return f"model code differs between sides: {', '.join(found.get('functions') or [])}{also}"


def code_lines(items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """One line per distinct comparison among the A/B items (item id, extra_info), with how many items it
    covers: a sweep of one model says it once."""
    groups: dict[str, list[str]] = {}
    for item, info in items:
        found = info.get(AB)
        line = code_line(found.get(MODEL_CODE) or {}) if isinstance(found, Mapping) else ""
        if line:
            groups.setdefault(line, []).append(item)
    return [
        f"{line} ({items[0] if len(items) == 1 else f'{len(items)} items'})" for line, items in groups.items()
    ]
