"""Shards across machines: pytest-split groups of tbench items, and `tbench merge` joining their JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.cli import main as pytest_benchmark_main

from pytest_tbench.cli import main as tbench_main
from pytest_tbench.cli.merge import ShardRecord, merge_runs
from pytest_tbench.core.errors import OptionError

from .conftest import FORWARD_BENCH, TINY

# Two models of two items each, as a benchmark list: the items a sharded nightly run would have.
BENCH_LIST = """
rounds: 2
warmup: 0
batch_sizes: 1
benchmarks:
  - model: tiny-gpt2
    seq_lens: [8, 16]
  - model: tiny-bert
    seq_lens: [8, 16]
"""

# Which models are loaded when each item starts, for the run's test to read back: a model whose last item
# went to another shard must still be released after its last item in this one.
LOADED_AT_START = """
import json
from pytest_tbench.plugin.state import STATE

SEEN = {}

def pytest_runtest_setup(item):
    loaded = item.config.stash[STATE].models._loaded
    SEEN[item.nodeid] = sorted(key.spec for key in loaded)

def pytest_sessionfinish(session):
    with open("loaded_at_start.json", "w") as f:
        json.dump(SEEN, f)
"""

ITEM = "test_bench.py::test_forward[{}-b1-s{}-cpu-float32]"

# The [test] extra pins pytest-split; without it (a bare install) these runs could not parse --splits.
needs_pytest_split = pytest.mark.skipif(
    importlib.util.find_spec("pytest_split") is None,
    reason="pytest-split is not installed: pip install -e '.[test]'",
)


def _items(run: dict[str, Any]) -> dict[str, Any]:
    """Each measured item's params (its coordinates), by name."""
    return {bench["fullname"]: bench["params"] for bench in run["benchmarks"]}


@needs_pytest_split
def _two_shards_by(durations: Path) -> list[str]:
    """pytest-split's options for two shards balanced by the stored durations (least_duration)."""
    return ["--durations-path", str(durations), "--splits", "2", "--splitting-algorithm", "least_duration"]


def test_shards_of_a_benchmark_list_merge_into_the_unsharded_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every file in the test's folder: pytest takes the common folder of the paths among its arguments (option
    # values included) as the rootdir where no ini file says, and item ids are relative to it.
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    pytester.makeconftest(LOADED_AT_START)
    config = pytester.makefile(".yaml", tbench=BENCH_LIST)
    # Stored durations that differ by an order of magnitude, as GPU items do: least_duration gives the costly
    # item a shard of its own, and the other shard gets tiny-gpt2's first item and both of tiny-bert's.
    costly = ITEM.format("tiny-gpt2", 16)
    durations = {ITEM.format(model, seq): 1.0 for model in ("tiny-gpt2", "tiny-bert") for seq in (8, 16)}
    durations[costly] = 10.0
    stored = pytester.path / "durations.json"
    stored.write_text(json.dumps(durations))
    common = ["-p", "no:cacheprovider", "--tbench-config", str(config)]
    split = [*common, *_two_shards_by(stored)]

    shards = []
    for group in (1, 2):
        out = pytester.path / f"shard{group}.json"
        result = pytester.runpytest(*split, "--group", str(group), f"--benchmark-json={out}")
        result.assert_outcomes(passed=1 if group == 1 else 3, deselected=3 if group == 1 else 1)
        shards.append(out)
    assert list(_items(json.loads(shards[0].read_text()))) == [costly]
    # tiny-gpt2's last item ran in shard 1: in shard 2 it is released after its one item there, before
    # tiny-bert's items start.
    loaded = json.loads((pytester.path / "loaded_at_start.json").read_text())
    assert loaded[ITEM.format("tiny-bert", 8)] == []
    assert loaded[ITEM.format("tiny-bert", 16)] == ["tiny-bert"]

    merged_path = pytester.path / "merged.json"
    assert tbench_main(["merge", *map(str, shards), "-o", str(merged_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert [s["items"] for s in merged["tbench"]["shards"]] == [1, 3]

    # The whole run, unsharded, gated against the merged one; pytest-split stores its durations under the
    # same item ids as the shards were split by.
    full_path, measured = pytester.path / "full.json", pytester.path / "measured.json"
    gate = ["--tbench-compare", str(merged_path), "--tbench-compare-fail", "time:5%"]
    store = ["--store-durations", "--durations-path", str(measured)]
    result = pytester.runpytest(*common, *store, *gate, f"--benchmark-json={full_path}")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*tbench REGRESSION GATE vs merged.json*", "*no regressions in 4 checks*"])
    full = json.loads(full_path.read_text())
    assert _items(merged) == _items(full)  # the same items, names and params
    assert sorted(json.loads(measured.read_text())) == sorted(durations)

    assert tbench_main(["compare", str(full_path), str(merged_path), "--fail", "time:5%"]) == 0
    assert tbench_main(["report", str(merged_path), "--out", str(pytester.path / "report")]) == 0
    csv_rows = (pytester.path / "report" / "items_forward.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 4  # the header and every item
    # pytest-benchmark's own command, in-process (its subprocess would import torch again, through the
    # conftest.py it imports from the folder it runs in: it runs in an empty one).
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    monkeypatch.setattr(sys, "argv", ["pytest-benchmark", "compare", str(merged_path)])
    capsys.readouterr()
    pytest_benchmark_main()
    table = capsys.readouterr().out
    assert all(name.split("::")[1] in table for name in _items(merged))


@needs_pytest_split
def test_pytest_split_groups_grid_items_by_their_ids(pytester: pytest.Pytester) -> None:
    """Items parametrised from --tbench-* flags split by the ids pytest-split stored: each item in exactly
    one group, the same split however often it is collected."""
    pytester.makepyfile(test_bench=FORWARD_BENCH)
    grid = [*TINY, "--tbench-batch-sizes", "1,2", "--tbench-seq-lens", "8,16", "--collect-only", "-q"]
    ids = [f"test_bench.py::test_forward[tiny-gpt2-b{b}-s{s}-cpu-float32]" for b in (1, 2) for s in (8, 16)]
    stored = pytester.path / "durations.json"
    stored.write_text(json.dumps({name: 100.0 if "b2-s16" in name else 1.0 for name in ids}))
    split = [*grid, *_two_shards_by(stored)]

    def collected(*args: str) -> list[str]:
        lines = pytester.runpytest(*args).stdout.lines
        return [line for line in lines if line.startswith("test_bench.py::")]

    assert sorted(collected(*grid)) == sorted(ids)
    assert collected(*split, "--group", "1") == [ids[3]]
    assert collected(*split, "--group", "2") == ids[:3]


def _shard(
    names: list[str],
    skipped: tuple[str, ...] = (),
    cpu: str = "Xeon",
    when: str = "2026-11-27T10:00:00+00:00",
    commit: str = "abc123",
    node: str = "box1",
    rounds: int = 3,
) -> dict[str, Any]:
    """A shard's JSON as pytest-benchmark and tbench write it, reduced to what a merge reads."""
    return {
        "machine_info": {
            "node": node,
            "tbench": {
                "cpu": cpu,
                "gpus": [],
                "torch_version": "2.13.0",
                "transformers_version": "5.0.0",
                "cuda_version": None,
                "torch_flags": {"cudnn_benchmark": False},
                "settings": {"rounds": {"value": rounds, "source": "command line"}},
            },
        },
        "commit_info": {"id": commit, "dirty": False},
        "benchmarks": [{"fullname": name, "params": {}, "stats": {"data": [0.1]}} for name in names],
        "datetime": when,
        "version": "5.3.1",
        "tbench": {"not_measured": [{"fullname": name, "outcome": "skipped"} for name in skipped]},
    }


def test_merged_run_records_its_shards() -> None:
    a = _shard(["t::a", "t::b"], skipped=("t::oom",), when="2026-11-27T10:05:00+00:00", node="box1")
    b = _shard(["t::c"], when="2026-11-27T10:09:00+00:00", node="box2", rounds=5)
    c = _shard(["t::d"], when="2026-11-27T09:59:00+00:00", node="box3")
    merged = merge_runs([("a.json", a), ("b.json", b), ("c.json", c)])
    run = merged.run
    assert [bench["fullname"] for bench in run["benchmarks"]] == ["t::a", "t::b", "t::c", "t::d"]
    assert run["machine_info"] == a["machine_info"] and run["commit_info"] == a["commit_info"]
    assert run["datetime"] == "2026-11-27T10:09:00+00:00"  # the latest shard's: when the run was complete
    assert run["tbench"]["not_measured"] == [{"fullname": "t::oom", "outcome": "skipped"}]
    assert run["tbench"]["shards"][0] == {
        "path": "a.json",
        "datetime": "2026-11-27T10:05:00+00:00",
        "node": "box1",
        "commit": "abc123",
        "items": 2,
        "not_measured": 1,
        "machine_differences": [],
    }
    assert [s["node"] for s in run["tbench"]["shards"]] == ["box1", "box2", "box3"]
    assert (merged.items, merged.not_measured) == (4, 1)
    # A setting that differs does not stop a merge (each item records its own rounds) but is said.
    assert merged.notes == ["setting rounds: a.json 3, b.json 5"]
    # Merging a merged run with one more shard keeps the original shards.
    again = merge_runs([("ab.json", run), ("e.json", _shard(["t::e"], node="box5"))])
    assert [s.node for s in again.shards] == ["box1", "box2", "box3", "box5"]
    assert again.shards[0] == ShardRecord("a.json", "2026-11-27T10:05:00+00:00", "box1", "abc123", 2, 1)


def test_merge_refuses_an_item_in_two_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError, match=r"t::b in a.json and b.json; t::c in a.json and b.json"):
        merge_runs([("a.json", _shard(["t::a", "t::b", "t::c"])), ("b.json", _shard(["t::b", "t::c"]))])
    # An item skipped in one shard and measured in another ran twice as well.
    with pytest.raises(OptionError, match=r"t::x in a.json and b.json"):
        merge_runs([("a.json", _shard(["t::a"], skipped=("t::x",))), ("b.json", _shard(["t::x"]))])
    many = [f"t::{i}" for i in range(8)]
    with pytest.raises(OptionError, match=r"t::4 in a.json and b.json; and 3 more"):
        merge_runs([("a.json", _shard(many)), ("b.json", _shard(many))])

    one = tmp_path / "one.json"
    one.write_text(json.dumps(_shard(["t::a"])))
    out = tmp_path / "run.json"
    assert tbench_main(["merge", str(one), str(one), "-o", str(out)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert tbench_main(["merge", str(one), str(tmp_path / "nope.json"), "-o", str(out)]) == 2
    assert "nope.json' does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_merge_refuses_another_machine_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _shard(["t::a"]), _shard(["t::b"], cpu="EPYC")
    b["machine_info"]["tbench"]["torch_flags"]["cudnn_benchmark"] = True
    with pytest.raises(OptionError) as refused:
        merge_runs([("a.json", a), ("b.json", b)])
    cpu, flags = "cpu: a.json 'Xeon', b.json 'EPYC'", "torch_flags.cudnn_benchmark: a.json False, b.json True"
    assert f"b.json: {cpu}; {flags}" in str(refused.value)
    assert "--any-machine" in str(refused.value)
    merged = merge_runs([("a.json", a), ("b.json", b)], any_machine=True)
    assert merged.shards[1].machine_differences == [cpu, flags]

    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, run in zip(paths, (a, b), strict=True):
        path.write_text(json.dumps(run))
    out = tmp_path / "run.json"
    assert tbench_main(["merge", *map(str, paths), "-o", str(out)]) == 2
    assert "different machines or software" in capsys.readouterr().err
    assert tbench_main(["merge", *map(str, paths), "-o", str(out), "--any-machine"]) == 0
    assert "2 shards, 2 items measured, 0 not measured" in capsys.readouterr().out
    assert [b["fullname"] for b in json.loads(out.read_text())["benchmarks"]] == ["t::a", "t::b"]


def test_merge_refuses_another_commit_unless_told() -> None:
    shards = [("a.json", _shard(["t::a"])), ("b.json", _shard(["t::b"], commit="def456"))]
    with pytest.raises(
        OptionError, match=r"different commits \(a.json abc123, b.json def456\).*--any-commit"
    ):
        merge_runs(shards)
    assert merge_runs(shards, any_commit=True).items == 2
