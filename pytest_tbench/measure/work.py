"""What a scenario gives the round loop: one measured call and its untimed hooks (``Work``), and the base of
works that wrap another (``WorkWrapper``: compiled, another backend, the energy window)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch: imported by the scenarios that count FLOPs
    from pytest_tbench.models.flops import FlopPass


class Work:
    """One measured call, how much it processes (for throughput), and optional per-round hooks.

    Written either way ``threading.Thread`` is: give the call and any hooks as callables
    (``Work(call, samples, tokens, after_round=...)``: a user's ``tbench.measure`` call, a small registered
    mode), or subclass and override the methods, keeping what the rounds leave behind as attributes (the
    built-in train and generate scenarios).

    ``prepare`` runs once, untimed, before the first round and before the item's memory tracking (a compiled
    variant compiles there, see ``scenarios/compiled.py``: its scratch is not the item's peak);
    ``before_round`` and ``after_round`` run untimed around every round, warm-up included (after the device is
    synchronised); ``metrics`` turns what the rounds recorded into extra_info, given how many leading rounds
    were warm-up; ``records`` returns the measured rounds' raw records (picklable), from which the scenario's
    ``pooled_metrics`` recomputes the metrics over rounds taken in several processes; ``cleanup`` runs once
    after the item, even when it failed; ``flops``: how one call's FLOPs are counted, once, untimed, after the
    rounds (None: not counted, as for a user's call, which may not be run again freely).
    """

    def __init__(
        self,
        call: Callable[[], object] | None = None,
        samples: int = 1,
        tokens: int = 0,
        *,
        before_round: Callable[[], None] | None = None,
        after_round: Callable[[], None] | None = None,
        metrics: Callable[[int], dict[str, Any]] | None = None,
        records: Callable[[int], list[Any]] | None = None,
        cleanup: Callable[[], None] | None = None,
        flops: FlopPass | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.samples = samples
        self.tokens = tokens
        self.flops = flops
        self._call, self._prepare, self._cleanup = call, prepare, cleanup
        self._before, self._after = before_round, after_round
        self._metrics, self._records = metrics, records

    def call(self) -> object:
        if self._call is None:
            raise NotImplementedError(f"{type(self).__name__}: give Work a call, or override call()")
        return self._call()

    def prepare(self) -> None:
        if self._prepare is not None:
            self._prepare()

    def before_round(self) -> None:
        if self._before is not None:
            self._before()

    def after_round(self) -> None:
        if self._after is not None:
            self._after()

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        return self._metrics(warmup_rounds) if self._metrics is not None else {}

    def records(self, warmup_rounds: int) -> list[Any]:
        return self._records(warmup_rounds) if self._records is not None else []

    def cleanup(self) -> None:
        if self._cleanup is not None:
            self._cleanup()


class WorkWrapper(Work):
    """A work around ``inner``: every call and hook is the inner work's until a subclass overrides it, and
    what it processes and how its FLOPs are counted stay the inner work's (the same products)."""

    def __init__(self, inner: Work) -> None:
        super().__init__(samples=inner.samples, tokens=inner.tokens, flops=inner.flops)
        self.inner = inner

    def call(self) -> object:
        return self.inner.call()

    def prepare(self) -> None:
        self.inner.prepare()

    def before_round(self) -> None:
        self.inner.before_round()

    def after_round(self) -> None:
        self.inner.after_round()

    def metrics(self, warmup_rounds: int) -> dict[str, Any]:
        return self.inner.metrics(warmup_rounds)

    def records(self, warmup_rounds: int) -> list[Any]:
        return self.inner.records(warmup_rounds)

    def cleanup(self) -> None:
        self.inner.cleanup()
