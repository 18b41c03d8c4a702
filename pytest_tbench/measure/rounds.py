"""What one round is, for every launcher: synchronise, the work's untimed ``before_round``, the timed call
(with the device synchronised inside the timed region), the untimed ``after_round``. pytest-benchmark's
pedantic drives these rounds in the pytest process (its timer and gc rule); a worker process drives them
itself by the same rules (``RoundRules``). --benchmark-disable is decided here too: one round, checks
included."""

from __future__ import annotations

import gc
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_tbench.machine.devices import synchronize
from pytest_tbench.measure.work import Work

DEFAULT_TIMER = "time.perf_counter"  # pytest-benchmark's default --benchmark-timer


@dataclass(frozen=True)
class RoundRules:
    """pytest-benchmark's rules for a timed call, which a worker follows as pedantic would in-process: the
    clock (``--benchmark-timer``, by dotted name, since the function itself may not pickle) and whether the
    garbage collector is off while a call is timed (``--benchmark-disable-gc``)."""

    timer: str = DEFAULT_TIMER
    disable_gc: bool = False


DEFAULT_RULES = RoundRules()


@dataclass(frozen=True)
class RoundBody:
    """The three parts of a round of ``work`` on ``device``, as pedantic's setup, target and teardown.
    ``devices``: every device the model touches (a device-mapped model spans several GPUs); empty: ``device``
    alone."""

    work: Work
    device: str
    devices: tuple[str, ...] = ()

    def synchronize(self) -> None:
        # Each GPU of a device-mapped model has its own queue: the last layers' GPU finishes last, and a
        # round is over only when all of them are.
        for device in self.devices or (self.device,):
            synchronize(device)

    def before(self) -> None:  # untimed: every round starts with the device idle
        self.synchronize()
        self.work.before_round()

    def timed(self) -> None:
        self.work.call()
        self.synchronize()  # a CUDA call returns before the GPU is done; the timer must wait for it

    def after(self) -> None:
        self.work.after_round()

    def whole(self) -> None:
        self.before()
        self.timed()
        self.after()


def planned_rounds(rounds: int, warmup: int, disabled: bool) -> tuple[int, int]:
    """The (rounds, warm-up rounds) every launcher runs: under --benchmark-disable one, hooks included, so
    that a round's checks (generate's token count) still run, as pytest-benchmark's "ran once, no stats"."""
    return (1, 0) if disabled else (rounds, warmup)


def run_with_pedantic(benchmark: Any, body: RoundBody, rounds: int, warmup: int) -> None:
    """The rounds in the pytest process, timed by pytest-benchmark's pedantic (its timer, its gc rule)."""
    if benchmark.disabled:
        # A disabled pedantic calls its target once, without teardown: the round is that target.
        benchmark.pedantic(body.whole)
        return
    benchmark.pedantic(
        body.timed, setup=body.before, teardown=body.after, rounds=rounds, warmup_rounds=warmup, iterations=1
    )


def run_rounds(
    work: Work,
    device: str,
    rounds: int,
    warmup: int,
    rules: RoundRules = DEFAULT_RULES,
    devices: tuple[str, ...] = (),
) -> list[float]:
    """The same loop as pytest-benchmark's pedantic(iterations=1), for a worker process: untimed setup and
    teardown around each timed call, warm-up rounds first and not kept; each call timed with ``rules.timer``
    and, under ``rules.disable_gc``, with the garbage collector off for that call only (as pytest-benchmark's
    runner does); ``devices``: every device the model touches, all synchronised. Returns seconds per measured
    call."""
    body = RoundBody(work, device, devices)
    timer = load_timer(rules.timer)
    samples = []
    for index in range(warmup + rounds):
        body.before()
        gc_was_enabled = gc.isenabled()
        if rules.disable_gc:
            gc.disable()
        try:
            start = timer()
            body.timed()
            elapsed = timer() - start
        finally:
            if gc_was_enabled:
                gc.enable()
        body.after()
        if index >= warmup:
            samples.append(elapsed)
    return samples


def timer_name(timer: Callable[[], float]) -> str:
    """The dotted name that imports ``timer`` again in a worker."""
    module, name = getattr(timer, "__module__", None), getattr(timer, "__qualname__", None)
    if module and name:
        dotted = f"{module}.{name}"
        try:
            if load_timer(dotted) is timer:
                return dotted
        except (ImportError, AttributeError, ValueError, TypeError):
            pass
    raise ValueError(
        f"--benchmark-timer {timer!r} cannot be imported by name in a worker process (--tbench-isolate / "
        "--tbench-processes): use a module-level function given in dotted form, such as time.perf_counter"
    )


def load_timer(dotted: str) -> Callable[[], float]:
    """The timer a dotted name stands for (the module is its longest importable prefix)."""
    target = pkgutil.resolve_name(dotted)
    if not callable(target):
        raise TypeError(f"timer {dotted} is {target!r}, not a function")
    return target  # type: ignore[no-any-return]
