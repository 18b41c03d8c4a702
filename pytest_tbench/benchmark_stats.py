"""What tbench needs of pytest-benchmark's fixture beyond pedantic: handing it timings measured elsewhere (an
isolated worker) as if pedantic had taken them, taking back an attempt that must not land, and the rules a
worker must time its calls by.

pytest-benchmark has no public call for these; ``_make_stats`` is the method pedantic itself uses to open an
item's stats, ``update`` adds one per-call duration, ``_timer`` and ``_disable_gc`` are the fixture's
``--benchmark-timer`` and ``--benchmark-disable-gc``. tests/test_isolation.py checks the resulting JSON, so a
change in pytest-benchmark shows up there; tests/test_gate.py checks that a re-measured item lands once, and
tests/test_launchers.py that workers follow the timer and gc rules and that an interrupted item is dropped.
"""

from __future__ import annotations

from typing import Any

from .launchers.base import RoundRules
from .launchers.rounds import timer_name


def record_samples(benchmark: Any, samples: list[float]) -> None:
    if not benchmark.disabled:  # disabled: "ran once, no stats", as pytest-benchmark does
        stats = benchmark._make_stats(1)
        for seconds in samples:
            stats.update(seconds)
    mark_used(benchmark)


def mark_used(benchmark: Any) -> None:
    """Mark the fixture as used, exactly as pedantic does (else pytest-benchmark warns it was unused)."""
    benchmark._mode = "benchmark.pedantic(...)"


def round_rules(benchmark: Any) -> RoundRules:
    """The fixture's timer and gc setting, for a worker process to follow (ValueError: a timer that cannot
    be named for import)."""
    return RoundRules(timer=timer_name(benchmark._timer), disable_gc=bool(benchmark._disable_gc))


def drop_unfinished(benchmark: Any) -> None:
    """Take the item's timings out of the session's results (pedantic added them when it started), so that an
    attempt that did not finish its rounds is not saved as a measurement; the fixture stays marked used."""
    metadata = benchmark.stats
    owner = getattr(benchmark._add_stats, "__self__", None)  # the session's list that pedantic appends to
    if metadata is not None and isinstance(owner, list) and metadata in owner:
        owner.remove(metadata)
    benchmark.stats = None


def discard_stats(benchmark: Any) -> None:
    """Forget the item's timings (its entry in the session's results too), so that it can be measured again
    through pedantic or ``record_samples``: a gate's re-measurement replaces an attempt."""
    drop_unfinished(benchmark)
    benchmark._mode = None
