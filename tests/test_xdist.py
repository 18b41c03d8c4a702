"""pytest-xdist (-n N): each worker's share of GPUs and cores, and a run spread over workers that the
controller prints, saves and gates exactly as one process would."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_tbench.core.errors import OptionError

# Imported before any in-process session: one that imports SQLAlchemy first leaves a second copy's classes.
from pytest_tbench.history.store import open_store
from pytest_tbench.models.loading import ModelCache, ModelKey
from pytest_tbench.plugin import xdist
from pytest_tbench.plugin.assign import (
    check_gpu_count,
    cpus_for_worker,
    gpus_for_worker,
    parent_visible_gpus,
    worker_index,
)
from pytest_tbench.plugin.pytest_benchmark_session import ReceivedBenchmark
from pytest_tbench.plugin.xdist import (
    WorkerPlan,
    expanded_specs,
    gpu_problem,
    plain_nodeid,
    plan_workers,
    planned_uuids,
    sets_visible_devices,
    with_visible_devices,
)
from pytest_tbench.settings.config import TBenchConfig

from .forked import runpytest_forked
from .test_gate import GATE_BENCH, SWEEP

EIGHT = [str(i) for i in range(8)]
XDIST_KEYS = {"xdist_worker", "visible_devices", "worker_cpus"}


def test_worker_gw3_with_two_gpus_each_of_eight_sees_6_and_7() -> None:
    visible = parent_visible_gpus(None, 8)
    assert visible == EIGHT
    assert gpus_for_worker(worker_index("gw3"), 2, visible) == ["6", "7"]
    assert gpus_for_worker(worker_index("gw0"), 1, visible) == ["0"]


@pytest.mark.parametrize(
    ("parent", "expected"),
    [
        ("4,5,6,7", ["6", "7"]),  # a job confined to GPUs 4-7 hands out 4-7, not 0-3
        ("GPU-aa, GPU-bb,GPU-cc,GPU-dd", ["GPU-cc", "GPU-dd"]),  # UUIDs pass through as given
    ],
)
def test_the_parents_visible_list_is_respected(parent: str, expected: list[str]) -> None:
    visible = parent_visible_gpus(parent, device_count=8)  # the count is ignored: the variable decides
    assert gpus_for_worker(1, 2, visible) == expected


def test_too_few_gpus_is_an_error_naming_the_numbers() -> None:
    assert parent_visible_gpus("", 8) == []  # an empty variable hides every GPU
    with pytest.raises(OptionError, match=r"3 xdist workers x --tbench-gpus-per-worker 2 need 6 GPUs, but 4"):
        check_gpu_count(3, 2, ["0", "1", "2", "3"])
    with pytest.raises(OptionError, match=r"-n 2 or fewer"):
        check_gpu_count(3, 2, ["0", "1", "2", "3"])
    check_gpu_count(2, 2, ["0", "1", "2", "3"])
    with pytest.raises(ValueError, match="not a pytest-xdist worker id"):
        worker_index("master")


def test_cpus_are_disjoint_equal_slices() -> None:
    cpus = [9, 8, 3, 2, 1, 0, 5]  # unsorted, with a gap; 7 CPUs for 3 workers: 2 each, one left idle
    slices = [cpus_for_worker(i, 3, cpus) for i in range(3)]
    assert slices == [[0, 1], [2, 3], [5, 8]]
    with pytest.raises(OptionError, match=r"3 xdist workers cannot each have a core.*-n 2 or fewer"):
        cpus_for_worker(0, 3, [0, 1])


def test_plans_for_gpu_and_cpu_items() -> None:
    gpu = TBenchConfig.of(gpus_per_worker=2)
    plans = plan_workers(4, {"cuda"}, gpu, EIGHT, [0, 1], explicit_gpus=False)
    assert [p.gpus for p in plans] == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    assert all(p.cpus is None for p in plans)  # GPU items leave the cores alone
    # --tx popen//env:CUDA_VISIBLE_DEVICES=i: the user's assignment stands, even with more workers than GPUs.
    explicit = plan_workers(9, {"cuda"}, gpu, EIGHT, [0, 1], explicit_gpus=True)
    assert {p.gpus for p in explicit} == {None}
    # Without the opt-in the cores are not pinned: the workers refuse CPU items once they have collected
    # them (refuse_shared_cpu), and ordinary tests run as usual.
    unpinned = plan_workers(2, {"cpu", "cuda"}, gpu, EIGHT, [0, 1], explicit_gpus=False)
    assert [p.cpus for p in unpinned] == [None, None]
    shared = TBenchConfig.of(allow_shared_cpu=True)
    plans = plan_workers(2, {"cpu"}, shared, [], [0, 1, 2, 3], explicit_gpus=False)
    assert [p.cpus for p in plans] == [(0, 1), (2, 3)]
    assert all(WorkerPlan.from_input(p.to_input()) == p for p in plans)
    one = plan_workers(1, {"cpu"}, TBenchConfig(), [], [0, 1], explicit_gpus=False)
    assert one == [WorkerPlan()]  # one worker shares its cores with nobody: no opt-in needed, no pinning


def test_tx_specs() -> None:
    specs = expanded_specs(["2*popen", "popen//env:CUDA_VISIBLE_DEVICES=3"])
    assert specs == ["popen", "popen", "popen//env:CUDA_VISIBLE_DEVICES=3"]
    assert [sets_visible_devices(s) for s in specs] == [False, False, True]


def test_each_worker_gets_its_gpus_in_its_spec_with_their_uuids() -> None:
    plans = [WorkerPlan(("2", "3")), WorkerPlan(("0", "1"), (0,)), WorkerPlan()]
    assert with_visible_devices(["popen", "popen//python=python3", "popen"], plans) == [
        "popen//env:CUDA_VISIBLE_DEVICES=2,3",
        "popen//python=python3//env:CUDA_VISIBLE_DEVICES=0,1",
        "popen",
    ]
    # UUIDs by position in the parent's visible list (torch's order there), whatever its entries are.
    visible, uuids = ["3", "1", "0", "2"], ["GPU-d", "GPU-b", "GPU-a", "GPU-c"]
    with_uuids = planned_uuids(plans, visible, uuids)
    assert [p.uuids for p in with_uuids] == [("GPU-c", "GPU-d"), ("GPU-a", "GPU-b"), None]
    assert all(WorkerPlan.from_input(p.to_input()) == p for p in with_uuids)
    assert planned_uuids(plans, visible, []) == plans  # no CUDA in the controller: nothing to check against


def test_a_worker_that_sees_other_gpus_fails_its_cuda_items(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_problem(["GPU-a"], ["GPU-a"], "gw0") is None
    problem = gpu_problem(["GPU-b"], ["GPU-a", "GPU-b"], "gw1")
    assert problem is not None and "gw1 was planned the GPUs GPU-b but its torch sees GPU-a, GPU-b" in problem
    config = SimpleNamespace(
        workerinput={"workerid": "gw1", "tbench": WorkerPlan(("1",), None, ("GPU-b",)).to_input()}
    )
    monkeypatch.setattr(xdist, "_GPU_CHECK", [])
    monkeypatch.setattr(xdist, "cuda_uuids", lambda: ["GPU-a"])  # CUDA_VISIBLE_DEVICES did not take
    for _ in range(2):  # every CUDA item of the worker, not only the first
        with pytest.raises(pytest.fail.Exception, match="planned the GPUs GPU-b but its torch sees GPU-a"):
            xdist.check_worker_gpus(config)  # type: ignore[arg-type]


# A conftest that asks CUDA at import, as many do: the driver reads CUDA_VISIBLE_DEVICES then, before the
# plugin's pytest_configure runs in the worker. The controller is told of two GPUs.
CUDA_AT_IMPORT = """
import os
import torch

torch.cuda.device_count = lambda: 2
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
worker = os.environ.get("PYTEST_XDIST_WORKER")
if worker:
    with open(f"visible-{worker}.txt", "w") as seen:
        seen.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
"""


def test_a_workers_gpus_are_set_before_its_conftest_is_imported(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CUDA_AT_IMPORT)
    pytester.makepyfile(test_bench=GATE_BENCH)
    result = runpytest_forked(pytester, *SWEEP, "--tbench-devices", "cuda", "-n", "2", timeout=300)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), result.stdout.str()
    seen = {path.stem: path.read_text() for path in pytester.path.glob("visible-gw*.txt")}
    assert seen == {"visible-gw0": "0", "visible-gw1": "1"}


def test_results_are_keyed_by_the_node_id_without_xdists_group_suffix() -> None:
    # What pytest-xdist's loadgroup makes of a node id where pytest lets it (pytest < 9.2).
    marks = [pytest.mark.xdist_group("tiny-gpt2").mark, pytest.mark.xdist_group(name="mine").mark]
    item: Any = SimpleNamespace(
        nodeid="b.py::test_forward[tiny-gpt2-b1-s8-cpu-float32]@mine_tiny-gpt2",
        config=SimpleNamespace(option=SimpleNamespace(loadgroup=True)),
        iter_markers=lambda name: iter(marks if name == "xdist_group" else []),
    )
    assert plain_nodeid(item) == "b.py::test_forward[tiny-gpt2-b1-s8-cpu-float32]"
    item.config.option.loadgroup = False  # not grouping: the id stands as it is
    assert plain_nodeid(item) == item.nodeid


def test_a_worker_keeps_one_model_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ModelCache({})
    keys = [ModelKey(spec, "base", "cpu", "float32") for spec in ("a", "b", "c")]
    cache._loaded = dict.fromkeys(keys)  # type: ignore[arg-type]
    released: list[ModelKey] = []
    monkeypatch.setattr(cache, "release", released.append)
    cache.release_others(keys[1])
    assert released == [keys[0], keys[2]]


def test_a_received_entry_answers_as_pytest_benchmarks_own() -> None:
    stats = {"min": 1.0, "median": 2.0, "data": [1.0, 3.0], "iterations": 1}
    entry = {"name": "t[a]", "fullname": "f.py::t[a]", "group": None, "extra_info": {"k": 1}, "stats": stats}
    received = ReceivedBenchmark(entry)
    assert received.as_dict() == entry
    assert "data" not in received.as_dict(include_data=False)["stats"]
    flat = received.as_dict(include_data=False, flat=True)
    assert flat["median"] == 2.0 and "stats" not in flat and "data" not in flat
    assert received["median"] == 2.0 and received.fullname == "f.py::t[a]" and not received.has_error


def _rows(output: str) -> list[list[str]]:
    """The tbench table's rows, timings aside: model, batch, input, device, dtype."""
    return [line.split()[:5] for line in output.splitlines() if line.startswith("tiny-gpt2 ")]


def _items(run: dict[str, Any]) -> dict[str, tuple[Any, set[str]]]:
    return {b["fullname"]: (b["params"], set(b["extra_info"])) for b in run["benchmarks"]}


def test_cpu_items_under_xdist_need_the_opt_in(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=GATE_BENCH)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest(*SWEEP, "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*xdist workers would run CPU items*2 workers*--tbench-allow-shared-cpu*"])
    result.assert_outcomes(errors=1)  # the refusal, shown once: nothing ran
    # A/B interleaves its two sides in one session: refused under xdist, before any side is opened.
    ab = pytester.runpytest(*SWEEP, "-n", "2", "--tbench-allow-shared-cpu", "--tbench-ab", "env:TBENCH_X=1")
    assert ab.ret == pytest.ExitCode.USAGE_ERROR
    ab.stderr.fnmatch_lines(["*--tbench-ab does not run under pytest-xdist*without -n*"])
    # Plain tests under -n (one worker will do) with the plugin active: no benchmark item, nothing to refuse.
    plain = pytester.runpytest("test_plain.py", "-n", "1")
    assert plain.ret == pytest.ExitCode.OK, plain.stdout.str()
    plain.assert_outcomes(passed=1)


# Gates on timings (a 20x slowdown against a one-process baseline) from an xdist session of its own: it runs
# alone, after the parallel part. Beside the parallel part's other sessions its inner workers have finished
# without running their items (xdist's "assert not crashitem"; 3 CI runs of 2026-12-07, not traced yet).
@pytest.mark.timing
def test_two_workers_print_save_and_gate_as_one_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_bench=GATE_BENCH)
    sweep = [*SWEEP, "--tbench-batch-sizes", "1,2", "--benchmark-autosave", "--tbench-compare-retries", "0"]
    one = pytester.runpytest(*sweep, "--benchmark-json=one.json")
    one.assert_outcomes(passed=2)
    storage = pytester.path / ".benchmarks"
    assert len(list(storage.rglob("*.json"))) == 1

    # Batch 2 made 20x slower, batch 1 unchanged: thresholds far wider than the gap between a one-process
    # baseline and workers pinned to one core each on a loaded machine, far narrower than the slowdown.
    monkeypatch.setenv("SLOW_2", "19")  # the workers inherit it
    wide = ["--tbench-compare-fail", "time:400%", "--tbench-compare-fail", "tokens_per_s:80%"]
    wide += ["--tbench-compare-drift", "0%"]  # as tests/test_gate.py states it: one saved session
    parallel = [*sweep, "-n", "2", "--tbench-allow-shared-cpu", "--tbench-compare=0001", *wide]
    store = pytester.path / "history.sqlite"
    two = pytester.runpytest(*parallel, "--benchmark-json=two.json", "-rf", "--tbench-store", str(store))
    two.assert_outcomes(passed=1, failed=1)
    two.stdout.fnmatch_lines(
        [
            "*tbench REGRESSION GATE vs *0001_*.json*",
            "*b1-s8-cpu-float32*time:400%*unchanged*",
            "*b2-s8-cpu-float32*time:400%*REGRESSED*",
            "FAILED test_bench.py::test_work?tiny-gpt2-b2-s8-cpu-float32?*",
        ]
    )
    assert "1 regressed item(s), 2 of 4 checks failed" in two.stdout.str()
    assert _rows(two.stdout.str()) == _rows(one.stdout.str()) != []
    saved = sorted(storage.rglob("*.json"))
    assert len(saved) == 2, saved  # the controller autosaved the run once; the workers saved nothing

    single = json.loads((pytester.path / "one.json").read_text())
    spread = json.loads((pytester.path / "two.json").read_text())
    assert json.loads(saved[1].read_text())["benchmarks"] == spread["benchmarks"]
    assert set(_items(spread)) == set(_items(single))  # the regressed item is saved too, as in one process
    for name, (params, keys) in _items(single).items():
        assert _items(spread)[name] == (params, keys | XDIST_KEYS)
    workers = spread["machine_info"]["tbench"]["xdist_workers"]
    assert set(workers) == {"gw0", "gw1"}
    cores = [set(w["worker_cpus"]) for w in workers.values()]
    assert cores[0] and cores[1] and not cores[0] & cores[1]  # each worker on its own cores
    for bench in spread["benchmarks"]:
        info = bench["extra_info"]
        assert info["worker_cpus"] == workers[info["xdist_worker"]]["worker_cpus"]
        assert len(bench["stats"]["data"]) == 12  # measured: every round, not a disabled fixture's one call
    # The controller wrote the one run, with every worker's items, into the history store.
    two.stdout.fnmatch_lines(["*tbench store: run 1 stored in *history.sqlite (2 items)*"])
    with open_store(str(store)) as opened:
        (stored,) = opened.runs()
    assert stored.items == 2
