"""benches/sweep_reliability.py: its plan, the changed model code, the z-score arithmetic and the figures, on
made-up sessions (no pytest session runs)."""

from __future__ import annotations

import ast
import json
import math
import random
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_tbench.judge.paired import paired_estimate

from .conftest import bench_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_script("sweep_reliability")


def test_each_trial_runs_every_kind_and_processes_5_once_in_a_seeded_order(bench: ModuleType) -> None:
    orders = [bench.trial_plan(["aa", "all", "one"], random.Random(7)) for _ in range(2)]
    assert orders[0] == orders[1]
    assert sorted(orders[0]) == ["aa", "all", "one", "processes-5"]
    rng = random.Random(0)
    assert len({tuple(bench.trial_plan(["aa", "all", "one"], rng)) for _ in range(10)}) > 1


def test_sweeps_items_and_what_each_kind_changes(bench: ModuleType) -> None:
    four = [i.key for i in bench.sweep_items("four", "gpt2")]
    assert four == ["gpt2-b1-s32", "gpt2-b1-s64", "gpt2-b2-s32", "gpt2-b2-s64"]
    assert len(bench.sweep_items("quick", "gpt2")) == 16
    assert bench.changed_items("aa", "four", "gpt2") == []
    assert [i.key for i in bench.changed_items("one", "quick", "gpt2")] == ["gpt2-b2-s64"]
    assert len(bench.changed_items("all", "quick", "gpt2")) == 16
    assert bench.mlp_class("tiny-gpt2")[1] == "GPT2MLP"
    assert bench.mlp_class("t5-small")[1] == "T5DenseActDense"


def test_the_changed_model_code_slows_only_its_shapes_and_keeps_the_outputs(bench: ModuleType) -> None:
    import torch
    from transformers import GPT2Config
    from transformers.models.gpt2 import modeling_gpt2

    items = bench.sweep_items("four", "tiny-gpt2")
    calibration = {i.key: {"change": ["projection", 16, 8]} for i in items}
    source = bench.mymodel_source(
        bench.changed_items("one", "four", "tiny-gpt2"), calibration, "four", "tiny-gpt2"
    )
    tree = ast.parse(source)
    changes = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHANGES"
    )
    assert changes == {("GPT2MLP", 2, 64): ("projection", 16, 8)}

    mlp = modeling_gpt2.GPT2MLP(64, GPT2Config(n_embd=16)).eval()
    stock = modeling_gpt2.GPT2MLP.forward
    calls: list[tuple[int, ...]] = []
    original_matmul = torch.matmul
    namespace: dict[str, Any] = {"__name__": "mymodel_test"}
    try:
        exec(source, namespace)
        assert modeling_gpt2.GPT2MLP.forward is not stock
        torch.matmul = lambda a, b: calls.append(tuple(b.shape)) or original_matmul(a, b)  # type: ignore[assignment]
        for shape in ((2, 64), (1, 64)):
            hidden = torch.randn(*shape, 16)
            with torch.inference_mode():
                assert torch.equal(mlp(hidden), stock(mlp, hidden))  # the extra projection adds zeros
        assert calls == [(16, 8)]  # at batch 2 x 64 tokens only
    finally:
        torch.matmul = original_matmul
        modeling_gpt2.GPT2MLP.forward = stock
    assert bench.next_k(100, 0.10, 0.05) == 50 and bench.next_k(100, -0.01, 0.05) == 300


def verdict_of(logs: list[float]) -> dict[str, Any]:
    """A time verdict as the JSON keeps it, from per-pair mean log ratios (one paired round per pair)."""
    estimate = paired_estimate([[1.0]] * len(logs), [[math.exp(x)] for x in logs])
    assert estimate is not None
    return {
        "change": estimate.ratio - 1,
        "low": estimate.low - 1,
        "high": estimate.high - 1,
        "pairs": estimate.pairs,
        "confidence": estimate.confidence,
        "pair_log_ratios": logs,
    }


def test_z_is_the_paired_t_statistic_the_interval_was_built_from(bench: ModuleType) -> None:
    logs = [0.01, -0.02, 0.035, 0.004, -0.011, 0.02, 0.0, 0.013]
    found = bench.z_score(verdict_of(logs))
    t_statistic = statistics.fmean(logs) / (statistics.stdev(logs) / math.sqrt(len(logs)))
    assert found["z"] == pytest.approx(t_statistic, rel=1e-9)
    assert found["df"] == 7
    assert found["se"] == pytest.approx(statistics.stdev(logs) / math.sqrt(8), rel=1e-9)
    assert abs(found["z_normal"]) < abs(found["z"])  # t's tails are heavier than the normal's
    assert bench.z_score({"change": 0.0, "low": None, "high": None, "pairs": 8}) is None


def test_the_sd_s_chi_square_interval(bench: ModuleType) -> None:
    found = bench.spread_of([-1.0, 1.0, -1.0, 1.0, 0.0])
    assert found["n"] == 5 and found["sd"] == pytest.approx(1.0)
    low, high = found["sd_ci95"]
    # sqrt(4 / chi2(0.975, 4)) and sqrt(4 / chi2(0.025, 4)): 11.143 and 0.4844
    assert low == pytest.approx(math.sqrt(4 / 11.1433), abs=1e-3)
    assert high == pytest.approx(math.sqrt(4 / 0.48442), abs=1e-3)
    assert bench.spread_of([1.0]) is None


def session(what: str, trial: int, wall: float, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"what": what, "trial": trial, "session_wall_s": wall, "items": items, **extra}


def item(
    key: str, changed: bool, logs: list[float], regressed: bool = False, undecided: bool = False
) -> dict:
    return {
        "item": key,
        "changed": changed,
        "wall_s": 10.0,
        "model_loads": 4,
        "time": verdict_of(logs),
        "regressed": regressed,
        "undecided": undecided,
    }


def made_up_records() -> list[dict[str, Any]]:
    quiet = [0.01, -0.01, 0.02, -0.02]
    slow = [0.05, 0.052, 0.048, 0.049]
    records = []
    for trial in range(2):
        aa = [item(f"m-b{b}", False, quiet, undecided=b == 1) for b in (1, 2)]
        records.append(session("aa", trial, 60.0, aa, failed=False, run_status="unchanged"))
        one = [item("m-b1", False, quiet), item("m-b2", True, slow, regressed=trial == 0)]
        records.append(session("one", trial, 80.0, one, failed=trial == 0, run_status="cannot tell"))
        ref = [
            {"item": "m-b1", "changed": False, "wall_s": 5.0},
            {"item": "m-b2", "changed": False, "wall_s": 7.0},
        ]
        records.append(session("processes-5", trial, 20.0 + 20 * trial, ref))
    records.append({"what": "aa", "trial": 2, "session_wall_s": 5.0, "exit_code": 3, "error": "boom"})
    return records


def test_figures_per_kind_calibration_and_markdown(bench: ModuleType) -> None:
    records = made_up_records()
    aa, one = bench.summarise_kind(records, "aa"), bench.summarise_kind(records, "one")
    assert (aa["runs"], aa["errors"], aa["runs_failed"], aa["unchanged_items_regressed"]) == (2, 1, 0, 0)
    assert (aa["undecided_items"], aa["runs_with_undecided"], aa["run_level"]) == (2, 2, {"unchanged": 2})
    assert aa["median_session_to_processes_5"] == pytest.approx(2.25)  # 60 / 20 and 60 / 40
    assert one["runs_failed"] == one["runs_with_changed_item_caught"] == one["changed_items_caught"] == 1
    assert one["median_time_change_of_changed"] == pytest.approx(math.expm1(0.04975), abs=1e-4)
    assert one["median_model_loads_per_session"] == 8

    z = bench.calibration_figure(records)
    assert z["z"]["n"] == 4 and z["se_check_max_gap"] < 1e-9
    assert z["z_sd_if_exact"] == pytest.approx(math.sqrt(3), abs=1e-3)  # 4 pairs: t on 3 degrees of freedom
    assert bench.calibration_figure(records, include_one=True)["z"]["n"] == 6

    args = bench.parse_args(["--runs", "2", "--kinds", "aa,one", "--pairs", "4"])
    calibration = {
        "m-b1": {"forward_ms": 10.0, "mlp_calls": 12, "change": ["projection", 768, 400], "slowdown": 0.049},
        "m-b2": {"forward_ms": 20.0, "mlp_calls": 12, "change": ["busy", 8.3e-5], "slowdown": 0.051},
    }
    figures = bench.figures_of(args, calibration, records, 2, 600.0)
    table = bench.markdown(figures)
    assert "| A/A | 0 / 2 (1 errors) | 0 / 12 | - | 0 / 4 | 2 (2 runs) | unchanged 2 |" in table
    assert "| one +5% (gpt2-b2-s64) | 1 / 2 | >= 8 / 12 caught | 1 / 2 runs | 0 / 2 |" in table
    assert "| m-b1 | 10.00 ms | 12 | projection 768 x 400 | +4.9% |" in table
    assert "| m-b2 | 20.00 ms | 12 | busy 83 us per call | +5.1% |" in table
    assert "| z = log(1 + change) / se | 4 |" in table


def test_kinds_are_checked(bench: ModuleType) -> None:
    assert bench.kinds_arg("aa, one") == ["aa", "one"]
    for bad in ("ab", "aa,aa", ""):
        with pytest.raises(Exception, match="give some of"):
            bench.kinds_arg(bad)


def test_parts_of_one_plan_merge_with_their_trials_numbered_on(bench: ModuleType, tmp_path: Path) -> None:
    args = bench.parse_args(["--runs", "2", "--kinds", "aa,one", "--pairs", "4"])
    calibration = {"m-b1": {"forward_ms": 10.0, "mlp_calls": 12, "change": ["busy", 1e-5], "slowdown": 0.05}}
    paths = []
    for seed in (1, 2):
        args.seed = seed
        paths.append(tmp_path / f"part{seed}.json")
        paths[-1].write_text(json.dumps(bench.figures_of(args, calibration, made_up_records(), 2, 600.0)))
    figures, table = bench.merge(paths)
    assert figures["runs"] == 4 and figures["seed"] == [1, 2] and figures["wall_time_s"] == 1200.0
    assert sorted({r["trial"] for r in figures["sessions"]}) == [0, 1, 2, 3, 4, 5]  # 3 trials a part
    assert figures["kinds_summary"]["aa"]["runs"] == 4 and figures["kinds_summary"]["aa"]["errors"] == 2
    # Each part's processes-5 session is still paired with its own trial's A/B sessions.
    assert figures["kinds_summary"]["aa"]["median_session_to_processes_5"] == pytest.approx(2.25)
    assert len(figures["calibrations"]) == 2 and "| A/A | 0 / 4 (2 errors)" in table
    args.change = "busy"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(bench.figures_of(args, calibration, made_up_records(), 2, 600.0)))
    with pytest.raises(SystemExit, match=r"another plan than .*part1.json \(change\)"):
        bench.merge([paths[0], other])
