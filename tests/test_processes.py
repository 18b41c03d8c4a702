"""--tbench-processes: an item's rounds spread over several worker processes, pooled into one result, and
the gate's significance test on per-process medians."""

from __future__ import annotations

import json
import statistics
from types import SimpleNamespace

import pytest

from pytest_tbench.core.criteria import parse_criterion
from pytest_tbench.core.measurement import Measurement
from pytest_tbench.judge.judge import IMPROVED, REGRESSED, UNCHANGED, judge
from pytest_tbench.judge.metrics import MetricValues, extract
from pytest_tbench.launch import isolated
from pytest_tbench.launch.base import Job
from pytest_tbench.launch.pooling import pool, split_rounds
from pytest_tbench.launch.worker import Outcome
from pytest_tbench.measure.rounds import DEFAULT_RULES
from pytest_tbench.measure.trackers.steps import RoundTiming
from pytest_tbench.scenarios.generate import GenerateRound
from pytest_tbench.settings.cases import BenchCase
from pytest_tbench.settings.config import RunSettings

from .conftest import TINY, run_json
from .forked import runpytest_forked

# The regression the gate reliability bench injects into worker processes: the same code, so that this test
# also checks the bench measures what it claims. Run from the repository root, as the README says.
from benches.gate_reliability import CONFTEST, SLOWDOWN_MODULE  # isort: skip

# In the suite's parallel part, but for the gate's end-to-end test (below), which runs alone.

BENCHES = """
import pytest

def test_forward(tbench):
    tbench.forward()

@pytest.mark.tbench(mode="generate")
def test_generate(tbench):
    tbench.generate()
"""


def test_rounds_are_split_evenly_and_never_below_one_per_process() -> None:
    assert split_rounds(20, 5) == [4, 4, 4, 4, 4]
    assert split_rounds(7, 3) == [3, 2, 2]
    assert split_rounds(2, 5) == [1, 1]
    assert split_rounds(1, 1) == [1]


def _outcome(samples: list[float], peak: int, records: list[RoundTiming] | None = None) -> Outcome:
    info = {"rounds": len(samples), "peak_memory_bytes": peak, "peak_rss_bytes": peak + 1, "train_steps": 3}
    info["model_load_time_s"] = 1.0
    return Outcome("ok", samples, Measurement.of(("worker", info)), records or [])


def test_pooling_keeps_every_round_and_the_largest_peak() -> None:
    case = BenchCase("train", "tiny-gpt2", "lm", 1, 8, "cpu", "float32")
    outcomes = [_outcome([1.0, 3.0], 100), _outcome([2.0], 300), _outcome([4.0, 5.0, 6.0], 200)]
    samples, info = pool(case, outcomes)
    assert samples == [1.0, 3.0, 2.0, 4.0, 5.0, 6.0]
    assert info["rounds"] == 6
    assert info["process_rounds"] == [2, 1, 3]
    assert info["process_medians_s"] == [2.0, 2.0, 5.0]
    assert (info["peak_memory_bytes"], info["peak_rss_bytes"]) == (300, 301)  # one process's figures
    assert info["peak_memory_per_process_bytes"] == [100, 300, 200]
    assert info["train_steps"] == 9


def test_the_one_worker_that_counted_flops_gives_the_pooled_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # The FLOP pass is a call's work or more, untimed: the first worker of an item counts, the rest do not.
    case = BenchCase("forward", "tiny-gpt2", "lm", 1, 8, "cpu", "float32")
    counted = _outcome([1.0], 100)
    counted.info = counted.info.add(
        ("flops", {"flops_per_call": 1234, "flops_method": "counted", "prefill_flops": 1000})
    )
    _, info = pool(case, [counted, _outcome([2.0], 300)])  # the peak is the second's, which did not count
    assert (info["peak_memory_bytes"], info["flops_per_call"], info["flops_method"]) == (300, 1234, "counted")
    assert info["prefill_flops"] == 1000

    jobs: list[Job] = []

    def run_worker(job: Job) -> Outcome:
        jobs.append(job)
        outcome = _outcome([1.0] * job.rounds, 100)
        outcome.info = outcome.info.add(("item", {"samples_per_call": 1, "tokens_per_call": 8}))
        return outcome

    monkeypatch.setattr(isolated, "run_worker", run_worker)
    monkeypatch.setattr(isolated, "round_rules", lambda benchmark: DEFAULT_RULES)
    monkeypatch.setattr(isolated, "record_samples", lambda benchmark, samples: None)
    job = Job(case, "tiny-gpt2", "builtin", None, None, RunSettings(), 5, 1)
    isolated.measure_in_workers(SimpleNamespace(disabled=False), job, [2, 2, 1])
    assert [j.count_flops for j in jobs] == [True, False, False]


def test_pooled_generate_metrics_cover_the_rounds_of_every_process() -> None:
    case = BenchCase("generate", "tiny-gpt2", "lm", 2, 8, "cpu", "float32", new_tokens=3)

    def round_of(ttft: float) -> GenerateRound:
        return GenerateRound(RoundTiming(ttft, (0.01, 0.03), ttft + 0.04, 3))

    outcomes = [
        _outcome([0.1], 10, [round_of(0.06)]),
        _outcome([0.2, 0.2], 10, [round_of(0.16), round_of(0.16)]),
    ]
    _, info = pool(case, outcomes)
    assert info["measured_rounds"] == 3
    assert info["ttft_per_round_s"] == [0.06, 0.16, 0.16]
    assert info["decode_token_latency_count"] == 6
    assert info["ttft_mean_s"] == pytest.approx((0.06 + 0.16 + 0.16) / 3)
    assert info["decode_tokens_per_s"] == pytest.approx(2 * 2 / 0.04)


def _grouped(medians: list[float], spread: float = 0.002) -> MetricValues:
    """Four rounds per process, tight around each process' median."""
    groups = tuple(tuple(m * (1 + spread * k) for k in (-1.5, -0.5, 0.5, 1.5)) for m in medians)
    values = tuple(v for g in groups for v in g)
    return MetricValues(statistics.median(values), values, False, "s", groups)


def _ungrouped(values: MetricValues) -> MetricValues:
    return MetricValues(values.point, values.samples, values.higher_is_better, values.unit)


def test_between_process_spread_is_noise_when_the_runs_have_enough_processes() -> None:
    time_5 = parse_criterion("time:5%")
    base = _grouped([1.00, 1.10, 0.95, 1.04, 0.98])
    now = _grouped([1.06, 1.12, 1.02, 1.09, 1.05])  # +6%, but inside the processes' spread
    verdict = judge("x", time_5, base, now)
    assert verdict.change > 0.05
    assert verdict.status == UNCHANGED and verdict.tested_on == "5 vs 5 processes"
    # The same rounds without their processes: 20 tight samples each, and the test is fooled.
    fooled = judge("x", time_5, _ungrouped(base), _ungrouped(now), drift=0.0)
    assert fooled.status == REGRESSED and fooled.tested_on == "20 vs 20 rounds"


def test_a_shift_past_every_process_is_a_regression_and_fewer_processes_fall_back_to_rounds() -> None:
    time_5 = parse_criterion("time:5%")
    base = _grouped([1.00, 1.02, 0.99, 1.01, 1.03])
    slow = _grouped([1.20, 1.22, 1.19, 1.21, 1.23])
    verdict = judge("x", time_5, base, slow, drift=0.0)
    assert (verdict.status, verdict.tested_on) == (REGRESSED, "5 vs 5 processes")
    assert verdict.p_value is not None and verdict.p_value < 0.01
    assert "p=0.004 (5 vs 5 processes)" in verdict.describe()
    assert judge("x", time_5, slow, base).status == IMPROVED
    four = _grouped([1.00, 1.02, 0.99, 1.01])
    assert judge("x", time_5, four, _grouped([1.2, 1.22, 1.19, 1.21])).tested_on == "16 vs 16 rounds"


def test_the_gate_reads_processes_from_a_saved_item() -> None:
    bench = {
        "stats": {"data": [1.0, 2.0, 3.0, 4.0, 5.0]},
        "extra_info": {"process_rounds": [2, 3], "tokens_per_call": 10, "ttft_per_round_s": [1, 2, 3, 4, 5]},
    }
    assert extract("time", bench).groups == ((1.0, 2.0), (3.0, 4.0, 5.0))  # type: ignore[union-attr]
    assert extract("tokens_per_s", bench).groups[0] == (10.0, 5.0)  # type: ignore[union-attr]
    assert extract("ttft", bench).groups[1] == (3.0, 4.0, 5.0)  # type: ignore[union-attr]
    bench["extra_info"]["process_rounds"] = [2, 2]  # does not add up: not trusted
    assert extract("time", bench).groups == ()  # type: ignore[union-attr]


def test_an_item_spread_over_processes_lands_as_one_result(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench=BENCHES)
    args = [*TINY, "--tbench-rounds", "5", "--tbench-processes", "3", "--tbench-new-tokens", "4"]
    result, data = run_json(pytester, *args)
    result.assert_outcomes(passed=2)
    forward, generate = sorted(data["benchmarks"], key=lambda b: b["name"])
    for bench in (forward, generate):
        info = bench["extra_info"]
        assert len(bench["stats"]["data"]) == 5 == info["rounds"]
        assert info["processes"] == 3 and info["process_rounds"] == [2, 2, 1] and info["isolated"]
        assert len(info["process_medians_s"]) == 3
        assert info["peak_memory_bytes"] == max(info["peak_memory_per_process_bytes"])
    generated = generate["extra_info"]
    assert generated["measured_rounds"] == 5 and len(generated["ttft_per_round_s"]) == 5
    assert generated["decode_token_latency_count"] == 5 * 3  # new tokens - 1 steps per round
    assert data["machine_info"]["tbench"]["settings"]["processes"] == {"value": 3, "source": "command line"}


def test_measure_warns_that_it_runs_in_the_pytest_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bench="def test_it(tbench):\n    tbench.measure(lambda: None)\n")
    result = pytester.runpytest(*TINY, "--tbench-processes", "2")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*tbench.measure() runs in the pytest process*--tbench-processes*"])


# Compares timings: runs alone, after the parallel part of the suite (README: the test command). A 4x slowdown
# of every call was not past the parallel part's load: +57% once, with a round of 393 ms against 7 ms.
@pytest.mark.timing
def test_the_gate_judges_process_medians_end_to_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_bench=BENCHES.split("@pytest.mark")[0], gate_slowdown=SLOWDOWN_MODULE)
    pytester.makeconftest(CONFTEST)
    sweep = [*TINY, "--tbench-rounds", "5", "--tbench-processes", "5", "--tbench-warmup", "1"]
    base = runpytest_forked(pytester, *sweep, "--benchmark-json=base.json")
    base.assert_outcomes(passed=1)
    monkeypatch.setenv("TBENCH_GATE_SLOWDOWN", "3")  # each call 4x as long: past any noise
    criteria = ["--tbench-compare-fail", "time:50%", "--tbench-compare-fail", "peak_memory:50%"]
    criteria += ["--tbench-compare-drift", "0%", "--tbench-compare-retries", "1"]
    slow = runpytest_forked(
        pytester, *sweep, "--tbench-compare=base.json", *criteria, "--benchmark-json=now.json"
    )
    slow.assert_outcomes(failed=1)
    slow.stdout.fnmatch_lines(
        [
            "*time: baseline * ms, now * ms, +*% (threshold 50%, p=* (10 vs 5 proc*",
            "*measurements 1-1 had regressed: time +*% (p=0.004 (5 vs 5 processes))",
        ]
    )
    # Measured again in five new processes; the JSON holds both measurements pooled, the first also alone.
    (entry,) = json.loads((pytester.path / "now.json").read_text())["benchmarks"]
    assert len(entry["stats"]["data"]) == len(entry["extra_info"]["process_medians_s"]) == 10
    assert entry["extra_info"]["process_rounds"] == [1] * 10
    assert len(entry["extra_info"]["gate_earlier_attempts"][0]["rounds_s"]) == 5
