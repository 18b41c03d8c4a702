"""--tbench-ab end to end: pytest sessions whose items run on a base side and the current code, interleaved.

The measured call is a sleep (patched into the forward scenario by a module the bench's conftest imports,
which every side's workers import too), so that a slowdown's size is known and CI's noise cannot decide a
verdict."""

from __future__ import annotations

import stat
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_tbench import cli

from .conftest import run_json
from .test_json_contract import check_ab_keys

# The tests whose verdicts compare timings run alone, after the parallel part of the suite (README: the test
# command); the others (a side that fails, a skip, an A/A whose processes differ by far more than any load)
# run in the parallel part.
timing = pytest.mark.timing

# Every forward call sleeps: AB_SLEEP_S seconds, or AB_SLOW_SLEEP_S for batch-2 items, so that one session
# holds an unchanged item (b1) and a changed one (b2) when only one side sets AB_SLOW_SLEEP_S.
# AB_PROCESS_OFFSETS: the side with X=1 has processes whose sleeps are off by these fractions, the first of
# its processes by the first (counted in a file of AB_COUNTER_DIR): an offset of the process's own, which only
# more pairs average away. Fixed, not random: two random offsets a hair apart made a 2-pair interval narrow
# enough to decide (CI, 12-07).
SLEEP_MODULE = """
import fcntl, os, time
import pytest_tbench.scenarios.forward as scenarios
from pytest_tbench.measure.work import Work

original = scenarios.forward_work

def sleeping_work(loaded, case):
    work = original(loaded, case)
    seconds = float(os.environ.get("AB_SLEEP_S", "0.01"))
    if case.batch_size == 2:
        seconds = float(os.environ.get("AB_SLOW_SLEEP_S", str(seconds)))
    seconds *= 1 + process_offset()
    return Work(lambda: time.sleep(seconds), work.samples, work.tokens, flops=work.flops)

OFFSETS = {}

def process_offset():
    offsets = os.environ.get("AB_PROCESS_OFFSETS")
    if not offsets or os.environ.get("X") != "1":
        return 0.0
    if os.getpid() not in OFFSETS:  # one draw per process (a forked process starts with its parent's dict)
        with open(os.path.join(os.environ["AB_COUNTER_DIR"], "processes"), "a+") as counter:
            fcntl.flock(counter, fcntl.LOCK_EX)
            counter.seek(0)
            index = len(counter.read())
            counter.write("x")
        values = [float(v) for v in offsets.split(",")]
        OFFSETS[os.getpid()] = values[index % len(values)]
    return OFFSETS[os.getpid()]

scenarios.forward_work = sleeping_work
"""

# An in-process pytester run imports this conftest into the test's own process: the forward scenario is put
# back at the session's end, so that no later test of this process times a sleep.
CONFTEST = """
import ab_sleep
import pytest_tbench.scenarios.forward as scenarios

def pytest_unconfigure(config):
    scenarios.forward_work = ab_sleep.original
"""

BENCH = """
def test_forward(tbench):
    tbench.forward()
"""

ARGS = [
    "--tbench-models", "tiny-gpt2", "--tbench-seq-lens", "8", "--tbench-rounds", "2", "--tbench-warmup", "1",
    "--tbench-ab-pairs", "2", "-p", "no:cacheprovider",
]  # fmt: skip


# A verdict needs three pairs: with two, Student's t has one degree of freedom (t = 63.7 at 99%), and pair
# means 1.5% apart (seen in CI) leave even a doubling at "cannot tell".
THREE_PAIRS = ["--tbench-ab-pairs", "3"]


@pytest.fixture
def sleeping(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(ab_sleep=SLEEP_MODULE, conftest=CONFTEST, test_bench=BENCH)
    return pytester


def _entries(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {b["params"]["tbench_case"]["batch_size"]: b for b in data["benchmarks"]}


def _verdict(entry: dict[str, Any], metric: str = "time") -> dict[str, Any]:
    found = [v for v in entry["extra_info"]["ab"]["verdicts"] if v["criterion"].startswith(metric + ":")]
    assert len(found) == 1
    return found[0]


@timing
def test_env_side_finds_a_slowdown_with_its_sign_and_size_and_passes_the_unchanged_item(
    sleeping: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AB_SLOW_SLEEP_S", "0.015")  # the current side: b2 sleeps 15 ms, the base's 10 ms
    result, data = run_json(
        sleeping, *ARGS, "--tbench-batch-sizes", "1,2", "--tbench-ab", "env:AB_SLOW_SLEEP_S=0.010",
        "--tbench-ab-pairs", "3", subprocess=True,
    )  # fmt: skip
    # Items pass at their end; the run, decided over all of them, fails the session.
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    entries = _entries(data)
    unchanged, slowed = _verdict(entries[1]), _verdict(entries[2])
    assert unchanged["status"] in ("unchanged", "not worse past threshold", "cannot tell")
    assert unchanged["low"] < 0.05
    assert slowed["status"] == "REGRESSED"
    assert 0.35 < slowed["change"] < 0.65  # +50%
    assert 0 < slowed["low"] < slowed["change"] < slowed["high"]
    assert (slowed["pairs"], slowed["paired_rounds"]) == (3, 6)
    result.stdout.fnmatch_lines(
        ["*tbench A/B RUN*", "test_bench.py::test_forward?tiny-gpt2-b2-s8-cpu-float32?: REGRESSED",
         "*time +*% [[]+*%, +*%[]] (99% CI, 3 process pairs x 6 paired rounds), threshold 5%: REGRESSED*"]
    )  # fmt: skip
    # The run's decision: in the JSON, and the terminal's last tbench line.
    ab_run = data["tbench"]["ab_run"]
    assert ab_run["failed"] and ab_run["regressed"] == [entries[2]["fullname"]]
    # Two items are too few for a run-level test (test_run_verdict.py tests it on many).
    assert ab_run["procedure"] == "benjamini-hochberg" and ab_run["run"] is None
    result.stdout.fnmatch_lines(["tbench A/B: 2 items: 1 REGRESSED, 1 *; no run-level test under 4 items"])
    assert data["benchmarks"][0]["extra_info"]["ab"]["verdicts"][0]["p_value"] is not None

    # Both sides' results are kept: the current side as pytest-benchmark's stats, the base's rounds beside.
    info = entries[2]["extra_info"]
    assert len(entries[2]["stats"]["data"]) == len(info["ab_base"]["rounds_s"]) == 18
    assert info["process_rounds"] == info["ab_base"]["process_rounds"] == [6, 6, 6]
    assert min(info["ab_base"]["rounds_s"]) > 0.009 and min(entries[2]["stats"]["data"]) > 0.014
    assert info["ab_base"]["median_s"] == pytest.approx(statistics.median(info["ab_base"]["rounds_s"]))
    check_ab_keys(data)

    # Interleaving: pairs start with the base and the current side in turn, and alternate A B B A inside.
    ab = info["ab"]
    assert ab["first_side_per_pair"] == ["base", "current", "base"]
    assert ab["order"] == ["BCCBBCCBBCCB", "CBBCCBBCCBBC", "BCCBBCCBBCCB"]
    assert ab["interleaving"] == ["rounds"]
    sides = ab["sides"]
    assert sides["base"]["env"] == {"AB_SLOW_SLEEP_S": "0.010"}
    assert sides["base"]["OMP_WAIT_POLICY"] == sides["current"]["OMP_WAIT_POLICY"] == "PASSIVE"
    # Every pair forks its workers from side processes of its own, kept for the session's next item.
    pids = sides["base"]["pids"] + sides["current"]["pids"]
    assert len(pids) == len(set(pids)) == 6  # 3 pairs x 2 sides
    assert entries[1]["extra_info"]["ab"]["sides"] == sides
    # A pair's workers serve every item of their model in turn: the first item loads it on each side of each
    # pair, the next one none.
    assert entries[1]["extra_info"]["ab"]["model_loads"] == 6 and ab["model_loads"] == 0
    # The side processes' start is the session's, said apart from the first item's own wall time.
    assert entries[1]["extra_info"]["ab"]["sides_start_s"] > 0.5 and ab["sides_start_s"] == 0

    result.stdout.fnmatch_lines(["*tbench A/B vs env:AB_SLOW_SLEEP_S=0.010*", "*b2*time*REGRESSED*"])

    # `tbench compare` judges the saved run again, from the JSON alone, by other criteria. Not 60%: with 3
    # pairs (t on 2 degrees of freedom) the interval of +50% can reach 60%, which the rule rightly fails.
    saved = str(sleeping.path / "out.json")
    assert cli.main(["compare", saved]) == 1
    assert cli.main(["compare", saved, "--fail", "time:300%", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| test_forward[tiny-gpt2-b2-s8-cpu-float32] | time:300%" in out and "| unchanged" in out


def _interpreter(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@timing
def test_python_side_runs_the_base_in_another_interpreter(sleeping: pytest.Pytester) -> None:
    # Another venv, simulated: a wrapper that starts this Python with a slower setting.
    wrapper = _interpreter(
        sleeping.path / "other-python", f'AB_SLOW_SLEEP_S=0.02 exec "{sys.executable}" "$@"'
    )
    result, data = run_json(
        sleeping,
        *ARGS,
        "--tbench-batch-sizes",
        "2",
        "--tbench-ab",
        f"python:{wrapper}",
        *THREE_PAIRS,
        subprocess=True,
    )
    result.assert_outcomes(passed=1)
    (entry,) = data["benchmarks"]
    verdict = _verdict(entry)
    assert verdict["status"] == "faster" and -0.6 < verdict["change"] < -0.4  # 20 ms -> 10 ms
    base = entry["extra_info"]["ab"]["sides"]["base"]
    assert base["spec"] == f"python:{wrapper}" and base["python_version"]


def test_a_side_that_fails_to_start_is_named(pytester: pytest.Pytester) -> None:
    # In-process runs, without the sleeping conftest (which would patch this process' forward scenario): no
    # item here gets as far as a measured round.
    pytester.makepyfile(test_bench=BENCH)
    broken = _interpreter(pytester.path / "broken-python", "echo 'no torch here' >&2; exit 3")
    result = pytester.runpytest(*ARGS, "--tbench-batch-sizes", "1", "--tbench-ab", f"python:{broken}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"*--tbench-ab: base side (python:{broken}): its process ({broken}) ended while starting "
         "(exit code 3)*", "*no torch here*"]
    )  # fmt: skip

    missing = pytester.runpytest(*ARGS, "--tbench-ab", "python:/no/such/python")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--tbench-ab python:/no/such/python: no executable there*"])

    not_a_repo = pytester.runpytest(*ARGS, "--tbench-ab", "origin/main")
    assert not_a_repo.ret == pytest.ExitCode.USAGE_ERROR
    not_a_repo.stderr.fnmatch_lines(["*--tbench-ab origin/main: * is not inside a git repository*"])

    bad = pytester.runpytest(*ARGS, "--tbench-ab", "env:X=1", "--tbench-ab-undecided", "maybe")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*unknown --tbench-ab-undecided mode 'maybe'; valid: pass, warn, fail*"])
    pairs = pytester.runpytest(*ARGS, "--tbench-ab", "env:X=1", "--tbench-ab-pairs", "6:4")
    assert pairs.ret == pytest.ExitCode.USAGE_ERROR
    pairs.stderr.fnmatch_lines(["*'6:4': pairs per item need MIN >= 2 and MAX >= MIN*"])


def test_an_undecided_item_warns_by_default_and_fails_or_passes_as_asked(
    sleeping: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An A/A whose X=1 processes are off by +20%, -20%, +10%: at 2 and at 3 pairs the interval holds 0 and 5%.
    monkeypatch.setenv("AB_PROCESS_OFFSETS", "0.2,-0.2,0.1")
    monkeypatch.setenv("AB_COUNTER_DIR", str(sleeping.path))
    args = [*ARGS, "--tbench-batch-sizes", "1", "--tbench-ab", "env:X=1", "--tbench-ab-pairs", "2:3"]
    result, data = run_json(sleeping, *args)
    assert result.ret == 0
    name = data["benchmarks"][0]["fullname"]
    # Undecided at the first look (2 pairs), the item got the budget's third pair, and its p-value was spent
    # over both looks (sequential.py).
    ab = data["benchmarks"][0]["extra_info"]["ab"]
    assert ab["pairs"] == 3 and [look["pairs"] for look in ab["looks"]] == [2, 3]
    assert [look["share"] for look in ab["looks"]] == [0.25, 0.75] and "rounds" in ab["looks"][0]["p_values"]
    # The first look knew the run's tests: this one item's (no run-level test under 4 items).
    assert ab["looks"][0]["run_tests"] == len({verdict["test"] for verdict in ab["verdicts"]})
    assert data["tbench"]["ab_run"]["undecided"] == [name]
    # The sides ran the same model code (the conftest patches the scenario, not the model): said under the
    # A/B table.
    assert ab["model_code"] == {"identical": True, "functions": [], "files": []}
    result.stdout.fnmatch_lines(["*identical model code on both sides (tiny-gpt2-b1-s8-cpu-float32)*"])
    assert data["tbench"]["ab_run"]["undecided_mode"] == "warn"
    result.stdout.fnmatch_lines(["*--tbench-ab: 1 item(s) the run cannot tell: test_bench.py::test_forward*"])
    result.stdout.fnmatch_lines(["tbench A/B: 1 item: 1 cannot tell; no run-level test under 4 items"])
    # The same run judged again from its JSON, failing or passing on undecided items as asked.
    saved = str(sleeping.path / "out.json")
    assert cli.main(["compare", saved, "--undecided", "fail"]) == 1
    assert "test_forward[tiny-gpt2-b1-s8-cpu-float32]: cannot tell (--tbench-ab-undecided fail)" in (
        capsys.readouterr().out
    )
    assert cli.main(["compare", saved, "--undecided", "pass"]) == 0


def test_measure_calls_are_skipped_with_the_reason(sleeping: pytest.Pytester) -> None:
    sleeping.makepyfile(test_bench="def test_call(tbench):\n    tbench.measure(lambda: None)\n")
    result = sleeping.runpytest(*ARGS, "--tbench-batch-sizes", "1", "--tbench-ab", "env:X=1", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--tbench-ab measures tbench.forward(), generate() and train() only*"])


def test_compare_of_one_run_needs_items_measured_with_ab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(
        '{"benchmarks": [{"name": "x", "fullname": "t.py::x", "stats": {"data": [1.0]}, "extra_info": {}}]}'
    )
    assert cli.main(["compare", str(plain)]) == 2
    assert "holds no item measured with --tbench-ab" in capsys.readouterr().err
