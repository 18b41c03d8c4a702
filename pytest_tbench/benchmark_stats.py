"""Handing timings measured elsewhere (an isolated worker) to pytest-benchmark, as if pedantic had taken them.

pytest-benchmark has no public call for this; ``_make_stats`` is the method pedantic itself uses to open an
item's stats, and ``update`` adds one per-call duration. tests/test_isolation.py checks the resulting JSON,
so a change in pytest-benchmark shows up there, and tests/test_gate.py checks that a re-measured item lands
once.
"""

from __future__ import annotations

from typing import Any


def record_samples(benchmark: Any, samples: list[float]) -> None:
    if benchmark.disabled:
        return
    stats = benchmark._make_stats(1)
    for seconds in samples:
        stats.update(seconds)
    benchmark._mode = "benchmark.pedantic(...)"  # marks the fixture as used, exactly as pedantic does


def discard_stats(benchmark: Any) -> None:
    """Forget the item's timings (its entry in the session's results too), so that it can be measured again
    through pedantic or ``record_samples``: a gate's re-measurement replaces an attempt."""
    metadata = benchmark.stats
    owner = getattr(benchmark._add_stats, "__self__", None)  # the session's list that pedantic appends to
    if metadata is not None and isinstance(owner, list) and metadata in owner:
        owner.remove(metadata)
    benchmark.stats = None
    benchmark._mode = None
