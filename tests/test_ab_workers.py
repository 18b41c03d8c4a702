"""The worker protocol every worker launcher speaks (launch/worker.py), and the A/B pairs' workers that
keep their model for its next item (launch/ab/keep.py, launch/ab/launcher.py)."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import pytest

from pytest_tbench.launch import worker as worker_module
from pytest_tbench.launch.ab import launcher as ab_launcher
from pytest_tbench.launch.ab.keep import CUDA_CONTEXT_BYTES, GIB, room_to_keep
from pytest_tbench.launch.ab.pairs import PairResult
from pytest_tbench.launch.base import Job
from pytest_tbench.launch.choose import job_for
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.models.registry import resolve
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import TBenchConfig


def _job(batch_size: int = 1, dtype: str = "float32", mode: str = "forward") -> Job:
    head = "causal-lm" if mode == "train" else "base"
    case = BenchCase(mode, "tiny-gpt2", head, batch_size, 8, "cpu", dtype)
    settings = TBenchConfig.of(isolate=True)
    return job_for(case, resolve("tiny-gpt2", {}), settings, rounds=2, warmup=1)


def _serving() -> tuple[Connection, threading.Thread]:
    ours, theirs = Pipe()
    thread = threading.Thread(target=worker_module.serve, args=(theirs,), daemon=True)
    thread.start()
    return ours, thread


def _one_item(conn: Connection, job: Job, turns: int = 2) -> Outcome:
    """The parent's side of one job as the A/B pairs speak it: one round per turn, then stop."""
    conn.send(("job", job))
    assert conn.recv() == ("ready",)
    for _ in range(turns):
        conn.send(("rounds", 1))
        reply = conn.recv()
        assert reply[0] == "samples" and len(reply[1]) == 1 and reply[1][0] > 0
    conn.send(("stop",))
    outcome = conn.recv()
    assert isinstance(outcome, Outcome) and outcome.status == "ok", outcome.message
    return outcome


def test_a_worker_serves_its_model_s_items_in_turn_loading_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Any] = []
    real_load = worker_module.load_model

    def counted_load(resolved: Any, key: Any) -> Any:
        loads.append(key)
        return real_load(resolved, key)

    monkeypatch.setattr(worker_module, "load_model", counted_load)
    conn, thread = _serving()
    first = _one_item(conn, _job(batch_size=1))
    second = _one_item(conn, _job(batch_size=2))
    assert (first.loaded_model, second.loaded_model) == (True, False)
    assert len(loads) == 1
    assert len(second.samples) == 2 and second.info["batch_size"] == 2
    # Another model (here the same weights in another dtype) is loaded in place of the first.
    other = _one_item(conn, _job(dtype="bfloat16"))
    assert other.loaded_model and len(loads) == 2
    # After a train step the weights are no longer the model's start: the next train item loads afresh.
    trained = [_one_item(conn, _job(mode="train")) for _ in range(2)]
    assert [o.loaded_model for o in trained] == [True, True] and len(loads) == 4
    room = trained[-1].room
    assert room is not None and 0 < room[0] <= room[1]
    conn.close()  # end-of-file: the worker ends
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_an_item_that_fails_ends_its_worker_with_the_reason() -> None:
    conn, thread = _serving()
    conn.send(("job", _job(batch_size=1, dtype="no-such-dtype")))
    outcome = conn.recv()
    assert isinstance(outcome, Outcome) and outcome.status == "error"
    assert "no-such-dtype" in outcome.message
    thread.join(timeout=30)
    assert not thread.is_alive()


def _kept(peak_rss: int, free: int, total: int = 16 * GIB) -> Outcome:
    return Outcome("ok", info={"peak_rss_bytes": peak_rss}, room=(free, total))


def test_a_pair_is_kept_only_with_room_for_another_pair_beside_it() -> None:
    # Needed: two workers at this item's peak, and a tenth of the device spare.
    assert room_to_keep([_kept(GIB, 4 * GIB), _kept(GIB, 4 * GIB)], "cpu")
    assert not room_to_keep([_kept(GIB, 4 * GIB), _kept(GIB, 3 * GIB)], "cpu")  # 2 + 1.6 GiB > 3 GiB
    assert not room_to_keep([_kept(GIB, 4 * GIB), Outcome("ok", info={"peak_rss_bytes": GIB})], "cpu")
    # On a GPU: the allocator's reserved peak and a CUDA context per worker.
    gpu = Outcome("ok", info={"cuda_max_reserved_bytes": 10 * GIB}, room=(29 * GIB, 80 * GIB))
    assert (2 * (10 * GIB + CUDA_CONTEXT_BYTES) + 8 * GIB > 29 * GIB) and not room_to_keep([gpu], "cuda:0")
    roomy = Outcome("ok", info={"cuda_max_reserved_bytes": 10 * GIB}, room=(40 * GIB, 80 * GIB))
    assert room_to_keep([roomy, roomy], "cuda:0")


def test_a_pair_out_of_memory_beside_kept_workers_is_measured_again_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oom = PairResult(
        {"base": Outcome("oom", message="CUDA out of memory"), "current": Outcome("ok")}, "base", "rounds"
    )
    fine = PairResult({"base": Outcome("ok"), "current": Outcome("ok")}, "base", "rounds")
    results = [oom, fine]
    monkeypatch.setattr(ab_launcher, "run_pair", lambda sides, job, first: results.pop(0))

    class Session:
        released = 0

        def release_workers(self) -> bool:
            self.released += 1
            return self.released == 1  # kept workers the first time, none after

    session = Session()
    launcher = ab_launcher.ABLauncher(None, session, 2, [], [])  # type: ignore[arg-type]
    assert launcher._run_pair("item", {}, _job(), "base") is fine
    assert session.released == 1
    # With no kept workers to end, an out-of-memory pair stays one: the item is skipped as out of memory.
    results[:] = [oom, fine]
    assert launcher._run_pair("item", {}, _job(), "base") is oom


def test_a_worker_reads_its_device_s_room_where_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from pytest_tbench.machine.devices import memory_room

    cpu = memory_room("cpu")
    assert cpu is not None and 0 < cpu[0] <= cpu[1]
    seen: list[object] = []

    def mem_get_info(device: object) -> tuple[int, int]:
        seen.append(device)
        return 3 * GIB, 80 * GIB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert memory_room("cuda:1") == (3 * GIB, 80 * GIB)
    assert seen == [torch.device("cuda:1")]  # the item's own GPU, not the current one
    assert memory_room("mps") is None  # no figure: such a worker is not kept


def test_each_side_counts_an_item_s_flops_in_its_first_pair_only(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[Job] = []

    def run_pair(sides: Any, job: Job, first: str) -> PairResult:
        jobs.append(job)
        return PairResult({"base": Outcome("ok"), "current": Outcome("ok")}, first, "rounds")

    monkeypatch.setattr(ab_launcher, "run_pair", run_pair)
    monkeypatch.setattr(ab_launcher, "room_to_keep", lambda outcomes, device: True)

    class Session:
        def started(self, pairs: int, modules: Any, conftests: Any) -> list[dict[str, Any]]:
            return [{} for _ in range(pairs)]

    launcher = ab_launcher.ABLauncher(None, Session(), 3, [], [])  # type: ignore[arg-type]
    results: list[PairResult] = []
    assert launcher._measure_pairs(_job(), 3, results) is None
    assert [job.count_flops for job in jobs] == [True, False, False] and len(results) == 3
    # More pairs for an undecided item (a second look): none of them counts again.
    assert launcher._measure_pairs(_job(), 5, results) is None
    assert [job.count_flops for job in jobs[3:]] == [False, False]


class _EventWorker:
    """A side's worker that records when it is given its job and when its replies are read."""

    def __init__(self, side: str, events: list[str]) -> None:
        self.side, self.events = side, events

    def receive(self) -> Any:
        self.events.append(f"{self.side} read")
        return ("ready",) if not self.events[-2].startswith(f"{self.side} round") else ("sample", 0.01)

    def send(self, message: tuple[Any, ...]) -> None:
        self.events.append(f"{self.side} {message[0]}")

    def close(self) -> None:
        pass


class _EventSide:
    def __init__(self, side: str, events: list[str]) -> None:
        self.side, self.events = side, events

    def worker_for(self, job: Job) -> _EventWorker:
        self.events.append(f"{self.side} job")  # the worker loads and warms up from here
        return _EventWorker(self.side, self.events)


@pytest.mark.parametrize(
    ("device", "compile_mode", "in_turn"),
    [("cpu", "off", False), ("cuda", "off", True), ("cpu", "default", True)],
)
def test_the_second_side_warms_up_after_the_first_on_a_gpu_or_compiled(
    monkeypatch: pytest.MonkeyPatch, device: str, compile_mode: str, in_turn: bool
) -> None:
    """Warm-up is where kernels are chosen (inductor times its candidates): on a GPU, or for a compiled item,
    a side warming beside the other would choose under the other's load."""
    from dataclasses import replace

    from pytest_tbench.launch.ab import pairs

    events: list[str] = []
    job = _job()
    job = replace(job, case=replace(job.case, device=device, compile=compile_mode))
    monkeypatch.setattr(pairs, "_finish", lambda worker: Outcome("ok"))
    sides = {name: _EventSide(name, events) for name in ("base", "current")}
    pairs.run_pair(sides, job, "base")  # type: ignore[arg-type]
    warm = events[:4]
    if in_turn:
        assert warm == ["base job", "base read", "current job", "current read"]
    else:
        assert warm == ["base job", "current job", "base read", "current read"]
