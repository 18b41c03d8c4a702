"""One pair of workers, one per side, measuring an item with their rounds interleaved.

Both workers load the model (or keep it from the model's previous item: side_process.py) and warm up, then
the rounds alternate in a balanced order, A B B A A B B A ..., starting with the side the pair was given
first: each paired round is two adjacent rounds, one per side, and over two paired rounds each side goes
first once, so a drift over seconds or a cost of following the other side's round falls on both sides
alike. Only the worker whose turn it is runs: the other waits blocked on its socket. Where the two models
do not fit on the device together (the second side runs out of memory while the first is loaded), the pair
runs its whole processes one after the other instead, in the same order, and says so; those workers are
not kept.

The two sides warm up at the same time on a CPU item (nothing is measured yet), but one after the other on a
GPU or for a compiled item: warm-up is where cuBLAS and inductor choose kernels, the latter by timing its
candidates, and a side warming beside the other would choose its kernels under the other's load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pytest_tbench.core.axes import COMPILE_OFF
from pytest_tbench.launch.ab.session import BASE, CURRENT
from pytest_tbench.launch.ab.side_process import SideProcess, Worker
from pytest_tbench.launch.base import Job
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.machine.devices import is_cuda

Interleaving = Literal["rounds", "processes"]
STOPPED = "stopped: the other side failed"


def balanced_order(first: str, second: str, rounds: int) -> list[tuple[str, str]]:
    """The sides' order in each paired round: (first, second), (second, first), (first, second), ..."""
    return [(first, second) if index % 2 == 0 else (second, first) for index in range(rounds)]


@dataclass
class PairResult:
    """What one pair measured: each side's outcome (its samples in round order) and how they ran."""

    outcomes: dict[str, Outcome]
    first: str
    interleaving: Interleaving
    order: list[str] = field(default_factory=list)  # the sides in the order their rounds ran

    @property
    def failure(self) -> tuple[str, Outcome] | None:
        """The side whose worker did not finish (out of memory, an error, a crash), not the one stopped for
        it."""
        failed = [(s, o) for s, o in self.outcomes.items() if o.status != "ok"]
        return next((f for f in failed if f[1].message != STOPPED), failed[0] if failed else None)


def warms_in_turn(job: Job) -> bool:
    """Whether the second side starts its warm-up only once the first is ready (the module says why)."""
    return is_cuda(job.case.device) or job.case.compile != COMPILE_OFF


def run_pair(sides: dict[str, SideProcess], job: Job, first: str) -> PairResult:
    """``job`` (its ``rounds`` paired rounds) on both sides, interleaved by rounds; by whole processes if the
    second model does not fit beside the first."""
    second = CURRENT if first == BASE else BASE
    in_turn = warms_in_turn(job)
    workers: dict[str, Worker] = {}
    ready: dict[str, Any] = {}
    for side in (first, second):
        workers[side] = sides[side].worker_for(_side_job(job, side))
        if in_turn:  # the first side is ready before the second starts
            ready[side] = workers[side].receive()
    if not in_turn:  # both warm up at once
        ready = {side: worker.receive() for side, worker in workers.items()}
    failed = {side: r for side, r in ready.items() if isinstance(r, Outcome)}
    if failed:
        for worker in workers.values():
            worker.close()  # a worker blocked on its socket sees end-of-file and exits
        if set(failed) == {second} and failed[second].status == "oom" and ready[first] == ("ready",):
            return _run_in_turn(sides, job, first, second)
        return PairResult(
            {s: failed.get(s, Outcome("error", message=STOPPED)) for s in workers}, first, "rounds"
        )
    order: list[str] = []
    for pair in balanced_order(first, second, job.rounds):
        for side in pair:
            workers[side].send(("rounds", 1))
            reply = workers[side].receive()
            if isinstance(reply, Outcome):  # it failed mid-way: the other side stops too
                workers[second if side == first else first].close()
                workers[side].close()
                return PairResult({side: reply, **_stopped(workers, side)}, first, "rounds", order)
            order.append(side)
    outcomes = {side: _finish(worker) for side, worker in workers.items()}
    return PairResult(outcomes, first, "rounds", order)


def _run_in_turn(sides: dict[str, SideProcess], job: Job, first: str, second: str) -> PairResult:
    outcomes: dict[str, Outcome] = {}
    order: list[str] = []
    for side in (first, second):
        outcomes[side] = _run_alone(sides[side], job, side, order)
        if outcomes[side].status != "ok":
            break
    for side in (first, second):
        outcomes.setdefault(side, Outcome("error", message=STOPPED))
    return PairResult(outcomes, first, "processes", order)


def _run_alone(process: SideProcess, job: Job, side: str, order: list[str]) -> Outcome:
    worker = process.worker_for(_side_job(job, side))
    reply = worker.receive()
    if isinstance(reply, Outcome):
        worker.close()
        return reply
    for _ in range(job.rounds):
        worker.send(("rounds", 1))
        sample = worker.receive()
        if isinstance(sample, Outcome):
            worker.close()
            return sample
        order.append(side)
    outcome = _finish(worker)
    worker.close()  # the two sides' models do not fit together: neither is kept
    return outcome


def _finish(worker: Worker) -> Outcome:
    """The job's outcome; the worker stays, holding its model for the next item (unless it failed)."""
    worker.send(("stop",))
    outcome = worker.receive()
    if not isinstance(outcome, Outcome):
        worker.close()
        return Outcome("error", message=f"{worker.side.name}: unexpected reply {outcome!r}")
    if outcome.status != "ok":
        worker.close()
    return outcome


def _stopped(workers: dict[str, Worker], failed: str) -> dict[str, Any]:
    return {side: Outcome("error", message=STOPPED) for side in workers if side != failed}


def _side_job(job: Job, side: str) -> Job:
    """The job as one side runs it: its profile's trace named after the side (--tbench-profile)."""
    return job if job.profile is None else replace(job, profile=replace(job.profile, label=side))
