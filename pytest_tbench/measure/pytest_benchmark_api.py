"""What tbench needs of pytest-benchmark's fixture beyond its public call (pedantic): the one module that
touches the fixture's private API, so that a change there is fixed here (the session's private API:
plugin/pytest_benchmark_session.py).

What it touches, and the test that fails if pytest-benchmark changes it:

- ``BenchmarkFixture._make_stats`` (the method pedantic opens an item's stats with) and ``Stats.update``:
  timings measured elsewhere (isolated workers) land as if pedantic had taken them (``record_samples``);
  tests/test_isolation.py checks the resulting JSON.
- ``BenchmarkFixture._mode``: the fixture counts as used, or can be used again (``mark_used``,
  ``discard_stats``); tests/test_gate.py (a re-measured item lands once) and tests/test_launchers.py.
- ``BenchmarkFixture._add_stats`` (bound to the session's list of results) and ``.stats``: an attempt that
  must not land is taken back out (``drop_unfinished``); tests/test_launchers.py (an interrupted item is
  dropped) and tests/test_gate.py.
- ``BenchmarkFixture._timer`` and ``._disable_gc`` (``--benchmark-timer``, ``--benchmark-disable-gc``): the
  rules a worker times its calls by (``round_rules``); tests/test_launchers.py.

Used elsewhere and public: the fixture's ``pedantic``, ``disabled``, ``extra_info``, ``fullname`` and
``stats.stats.data`` (the timings pedantic took, runner.py), the ``benchmark_save_data`` option
(plugin/hooks.py) and the ``pytest_benchmark_*`` hooks.
"""

from __future__ import annotations

from typing import Any

from pytest_tbench.measure.rounds import RoundRules, timer_name


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
