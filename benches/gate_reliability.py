"""How often does a regression gate cry wolf, and how often does it catch a real slowdown?

A benchmark of the gate itself (not a test): it runs the same forward bench many times as separate pytest
sessions, unchanged (A/A) and with a known slowdown of the timed call (A/B). Each session runs this plugin's
gate as CI would (`--tbench-compare-last` with `--tbench-compare-fail time:5%`: threshold and significance on
per-process medians, and an item that regresses is measured again `--tbench-compare-retries` times before it
fails). The same runs are also judged on their first measurement alone (the gate without retries), and by
pytest-benchmark's own `--benchmark-compare-fail=mean:5%` rule (its code, on the first measurement).

    python benches/gate_reliability.py --runs 20 --slowdown 0.10 [--baseline-runs 3] [--processes 5]
                                       [--retries 1] [--threads 1] [--busy | --bursts]

Baselines are kept as a main branch keeps them: the first --baseline-runs sessions are unchanged runs saved
with --benchmark-save, every A/A run is saved too once judged, and each run is judged against the newest
--baseline-runs of them pooled (pytest-benchmark's rule against the newest one, as `--benchmark-compare`
does). --baseline-runs 1 judges every run against the first session alone.

The workload is gpt2 (real size, random weights) forward at batch 1 x 64 tokens, `--rounds` measured rounds
spread over `--processes` worker processes (`--tbench-processes`; 1 measures in the pytest process, as a
plain run does). The slowdown is injected in the workers by a module the forkserver preloads. --threads sets
OMP_NUM_THREADS of the sessions: on a small VM, multi-threaded timings move by 10-80% from one process to the
next while single-threaded ones stay within a few percent, and no gate can be tighter than the machine.
--busy runs a CPU-burning process beside every session, as another job on a CI runner would; --bursts burns
every core in bursts of 5-30 s with 20-90 s pauses (seeded), as jobs that come and go would.

Setups side by side (--compare-setups)
--------------------------------------

    python benches/gate_reliability.py --compare-setups --runs 20 [--slowdowns 0.05,0.10] [--busy | --bursts]
                                       [--model gpt2] [--rounds N] [--ab-pairs N] [--seed 0] [--out FILE]

Three gates, each with its own defaults, judged on sessions that share the machine's states:
- ab: `--tbench-ab env:TBENCH_GATE_SLOWDOWN=0 --tbench-compare-fail time:5%`. Each session measures the
  unchanged code (the base side) and the session's own (the current side) interleaved in pairs of worker
  processes, and fails the item on a REGRESSED paired verdict ("cannot tell" passes);
- saved: `--tbench-compare base.json --tbench-compare-fail time:5%` (one process, 2 retries: the defaults),
  against one unchanged session saved with `--benchmark-json base.json` at the start;
- pytest-benchmark: its `--benchmark-compare-fail=mean:5%` rule (its own code) on the first measurement of
  the saved setup's sessions, against the same base.json.
Each trial runs, in an order shuffled per trial (seeded by --seed), one A/A session and one A/B session per
slowdown of each setup (ab, saved), and one more session that measures the item once with
`--tbench-processes 5` and no gate: what the ab setup's cost is compared with. Every session runs the same
item (--model, batch 1 x 64 tokens, --rounds if given, else the plugin's default) with OMP_NUM_THREADS
--threads; --busy and --bursts load the machine as above. --processes, --baseline-runs, --retries and
--slowdown belong to the mode above and are not used here.

Reported per setup: false failures in the N A/A sessions, catches in the N A/B sessions of each slowdown;
median wall times per session, per item (ab: the item's extra_info ab.wall_time_s; saved and
pytest-benchmark: the session's; processes-5: the item's worker_wall_time_s) and per trial (the setup's
sessions of one trial summed), with the ratios of the session's and the item's to processes-5's; for ab also
the median paired change of time and the median width of its confidence interval, per kind. The figures
are printed as JSON, then as Markdown; --out FILE writes the JSON (with every session's record) to FILE and
the Markdown beside it (FILE with the suffix .md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_benchmark.utils import parse_compare_fail

from pytest_tbench.core.criteria import parse_criteria
from pytest_tbench.judge.baseline import pool_runs
from pytest_tbench.judge.runs import compare_runs

BENCH = """
def test_forward(tbench):
    tbench.forward()
"""

# The injected regression: every forward call takes SLOWDOWN longer than it would. Imported by the conftest
# (in-process runs) and preloaded by the forkserver (worker processes).
SLOWDOWN_MODULE = """
import os, time
import pytest_tbench.scenarios.forward as scenarios
from pytest_tbench.measure.work import WorkWrapper

SLOWDOWN = float(os.environ.get("TBENCH_GATE_SLOWDOWN", "0"))

if SLOWDOWN and not getattr(scenarios, "slowed", False):
    original = scenarios.forward_work

    class Slowed(WorkWrapper):
        def call(self):
            start = time.perf_counter()
            self.inner.call()
            end = time.perf_counter() + SLOWDOWN * (time.perf_counter() - start)
            while time.perf_counter() < end:
                pass

    def slowed_work(loaded, case):
        return Slowed(original(loaded, case))

    scenarios.forward_work = slowed_work
    scenarios.slowed = True
"""

CONFTEST = """
import gate_slowdown  # noqa: F401
from pytest_tbench.launch.preload import add_model_code

add_model_code(["gate_slowdown"])  # the workers patch the model too
"""

COUNTS = [
    f"{kind}_{rule}"
    for kind in ("aa", "ab")
    for rule in ("ours", "ours_first", "pytest_benchmark", "remeasured")
]

BURNER = "while True:\n    pass\n"

# Every core busy for 5-30 s, then idle for 20-90 s; seeded so that two runs of the bench see the same load.
BURSTS = """
import multiprocessing, random, time

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

if __name__ == "__main__":
    pace = random.Random(0)
    while True:
        seconds = pace.uniform(5, 30)
        with multiprocessing.Pool(multiprocessing.cpu_count()) as pool:
            pool.map(burn, [seconds] * multiprocessing.cpu_count())
        time.sleep(pace.uniform(20, 90))
"""


def run_session(folder: Path, name: str, slowdown: float, args: argparse.Namespace, *, save: bool) -> Session:
    """One pytest session: gated against the saved runs when there are any, saved as one when ``save``."""
    extra = [
        "--tbench-warmup", "3", "--tbench-processes", str(args.processes),
        f"--benchmark-storage=file://{folder / 'storage'}",
    ]  # fmt: skip
    if any((folder / "storage").rglob("*.json")):
        extra += [
            "--tbench-compare", "--tbench-compare-last", str(args.baseline_runs),
            "--tbench-compare-fail", "time:5%", "--tbench-compare-retries", str(args.retries),
        ]  # fmt: skip
    if save:
        extra.append("--benchmark-save=main")
    finished = run_pytest(folder, name, slowdown, extra, args)
    return Session(finished.run, gate_failed=finished.exit_code == 1)


@dataclass
class Session:
    run: dict[str, Any]
    gate_failed: bool  # the item failed in the session: every attempt regressed

    @property
    def entry(self) -> dict[str, Any]:
        return self.run["benchmarks"][0]

    @property
    def first(self) -> dict[str, Any]:
        """The run as its first measurement saw it (a re-measured item holds every measurement pooled, and the
        first alone under ``gate_earlier_attempts``)."""
        attempts = self.entry["extra_info"].get("gate_earlier_attempts")
        if not attempts:
            return self.run
        info = dict(self.entry["extra_info"])
        if "process_rounds" in attempts[0]:
            info["process_rounds"] = attempts[0]["process_rounds"]
        entry = {**self.entry, "stats": {"data": attempts[0]["rounds_s"]}, "extra_info": info}
        return {**self.run, "benchmarks": [entry]}

    @property
    def remeasured(self) -> bool:
        return bool(self.entry["extra_info"].get("gate_earlier_attempts"))


def judge_first(history: list[dict[str, Any]], session: Session, pooled: int) -> tuple[bool, bool]:
    """(this plugin's gate fails, pytest-benchmark's mean:5% fails) on the first measurement alone. Ours
    pools the newest ``pooled`` unchanged runs into its baseline (--tbench-compare-last); pytest-benchmark
    compares with the newest one, as --benchmark-compare does."""
    first = session.first
    ours = bool(compare_runs(pool_runs(history[-pooled:]), first, parse_criteria("time:5%")).regressions)
    data = first["benchmarks"][0]["stats"]["data"]
    return ours, mean_rule_fails(data, history[-1]["benchmarks"][0]["stats"])


def mean_rule_fails(data: list[float], base_stats: dict[str, Any]) -> bool:
    """pytest-benchmark's `--benchmark-compare-fail=mean:5%` (its own code): the mean of ``data`` more than
    5% above the baseline's."""
    return bool(parse_compare_fail("mean:5%").fails({"mean": statistics.mean(data)}, base_stats))


# ---- --compare-setups: the ab, saved-baseline and pytest-benchmark gates on interleaved sessions ----

BASE_JSON = "base.json"
TIME_CRITERION = "time:5%"
AB, SAVED, PYTEST_BENCHMARK, PROCESSES_5 = "ab", "saved", "pytest-benchmark", "processes-5"
GATES = (AB, SAVED, PYTEST_BENCHMARK)
LABELS = {
    AB: "tbench `--tbench-ab` (paired, time:5%)",
    SAVED: "tbench saved baseline (time:5%, defaults: 2 retries)",
    PYTEST_BENCHMARK: "pytest-benchmark `mean:5%` (saved baseline)",
    PROCESSES_5: "`--tbench-processes 5`, no gate",
}
AA = "aa"


def kind_of(slowdown: float) -> str:
    """A session's kind: "aa" (unchanged) or "ab<slowdown>", e.g. "ab0.05"."""
    return AA if slowdown == 0 else f"ab{slowdown:g}"


@dataclass(frozen=True)
class Planned:
    """One session of a trial: which setup runs it, with what injected slowdown."""

    setup: str  # AB, SAVED (judged by PYTEST_BENCHMARK too) or PROCESSES_5
    slowdown: float

    @property
    def kind(self) -> str:
        return kind_of(self.slowdown)

    @property
    def name(self) -> str:
        return f"{self.setup}-{self.kind}"


def setup_args(setup: str, args: argparse.Namespace) -> list[str]:
    """The options that make a session one of ``setup``'s (the item's options come from run_pytest)."""
    if setup == AB:
        pairs = [] if args.ab_pairs is None else ["--tbench-ab-pairs", str(args.ab_pairs)]
        return ["--tbench-ab", "env:TBENCH_GATE_SLOWDOWN=0", "--tbench-compare-fail", TIME_CRITERION, *pairs]
    if setup == SAVED:
        return ["--tbench-compare", BASE_JSON, "--tbench-compare-fail", TIME_CRITERION]
    return ["--tbench-processes", "5"]


def trial_plan(slowdowns: list[float], rng: random.Random) -> list[Planned]:
    """A trial's sessions in a shuffled order: A/A and each A/B of both gated setups, and processes-5."""
    plan = [Planned(setup, slowdown) for setup in (AB, SAVED) for slowdown in (0.0, *slowdowns)]
    plan.append(Planned(PROCESSES_5, 0.0))
    rng.shuffle(plan)
    return plan


@dataclass
class Finished:
    """A pytest session of the item that ran to its end (passed, or failed by its gate)."""

    run: dict[str, Any]
    exit_code: int
    wall_s: float
    output: str

    @property
    def info(self) -> dict[str, Any]:
        return self.run["benchmarks"][0]["extra_info"]


def run_pytest(
    folder: Path, name: str, slowdown: float, extra: list[str], args: argparse.Namespace
) -> Finished:
    """The item in one pytest session with the slowdown ``slowdown`` and the options ``extra``; its results
    go to ``name``.json."""
    out = folder / f"{name}.json"
    env = {**os.environ, "TBENCH_GATE_SLOWDOWN": str(slowdown), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    command = [
        sys.executable, "-m", "pytest", "test_bench.py", "-q", "-p", "no:cacheprovider",
        "--tbench-models", args.model, "--tbench-batch-sizes", "1", "--tbench-seq-lens", "64",
        f"--benchmark-json={out}", *extra,
    ]  # fmt: skip
    if args.rounds is not None:
        command += ["--tbench-rounds", str(args.rounds)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1) or not out.is_file():
        raise SystemExit(f"session {name} ended with exit code {done.returncode}:\n{done.stdout[-3000:]}")
    return Finished(json.loads(out.read_text()), done.returncode, wall, done.stdout)


def ab_records(finished: Finished) -> list[dict[str, Any]]:
    """The ab setup's session: failed as the session says; the paired time verdict behind it."""
    found = finished.info.get("ab") or {}
    verdict = next((v for v in found.get("verdicts", []) if v["criterion"] == TIME_CRITERION), None)
    if verdict is None:  # a side that failed also fails the item: not a verdict to count
        raise SystemExit(f"an ab session has no {TIME_CRITERION} verdict:\n{finished.output[-3000:]}")
    failed = finished.exit_code == 1
    if failed != (verdict["status"] == "REGRESSED"):
        print(f"warning: an ab session's exit code and its {verdict['status']} verdict disagree", flush=True)
    width = None if verdict["low"] is None else verdict["high"] - verdict["low"]
    record = {"failed": failed, "status": verdict["status"], "change": verdict["change"], "ci_width": width}
    return [{"setup": AB, "item_wall_s": found["wall_time_s"], **record}]


def saved_records(finished: Finished, base_stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The saved setup's session, judged by this plugin's gate (the session's verdict) and by
    pytest-benchmark's rule on its first measurement (as judge_first does); both cost the session."""
    session = Session(finished.run, gate_failed=finished.exit_code == 1)
    first = session.first["benchmarks"][0]["stats"]["data"]
    ours = {"setup": SAVED, "failed": session.gate_failed, "remeasured": session.remeasured}
    theirs = {"setup": PYTEST_BENCHMARK, "failed": mean_rule_fails(first, base_stats)}
    return [{**record, "item_wall_s": finished.wall_s} for record in (ours, theirs)]


def records_of(planned: Planned, finished: Finished, base_stats: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per gate that judged the session (processes-5: one, ungated)."""
    if planned.setup == AB:
        found = ab_records(finished)
    elif planned.setup == SAVED:
        found = saved_records(finished, base_stats)
    else:
        found = [{"setup": PROCESSES_5, "failed": False, "item_wall_s": finished.info["worker_wall_time_s"]}]
    common = {"kind": planned.kind, "slowdown": planned.slowdown, "session_wall_s": finished.wall_s}
    return [{**common, **record} for record in found]


def compare_setups(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Run the trials (see the module's docstring); the figures as JSON and as Markdown."""
    rng = random.Random(args.seed)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with load_beside(args), tempfile.TemporaryDirectory() as tmp:
        folder = bench_folder(Path(tmp))
        base = run_pytest(folder, Path(BASE_JSON).stem, 0.0, [], args)
        for trial in range(args.runs):
            for position, planned in enumerate(trial_plan(args.slowdowns, rng)):
                finished = run_pytest(
                    folder, f"{planned.name}-{trial}", planned.slowdown, setup_args(planned.setup, args), args
                )
                for record in records_of(planned, finished, base.run["benchmarks"][0]["stats"]):
                    records.append({"trial": trial, "position": position, **record})
            print(f"trial {trial + 1}/{args.runs}: {progress(records)}", flush=True)
            # Written after every trial, so that a run cut short keeps what it measured.
            keep_jsons(folder, args.keep)
            write_out(args, *figures_of(args, base, records, trial + 1, time.perf_counter() - started))
    return figures_of(args, base, records, args.runs, time.perf_counter() - started)


def figures_of(
    args: argparse.Namespace, base: Finished, records: list[dict[str, Any]], trials: int, wall_s: float
) -> tuple[dict[str, Any], str]:
    """The figures of the first ``trials`` trials, as JSON and as Markdown."""
    base_stats = base.run["benchmarks"][0]["stats"]
    figures = {
        "runs": trials,
        "slowdowns": args.slowdowns,
        "model": args.model,
        "rounds": args.rounds,
        "ab_pairs": args.ab_pairs,
        "threads": args.threads,
        "load": load_name(args),
        "seed": args.seed,
        "base_median_ms": round(base_stats["median"] * 1000, 3),
        "base_session_wall_s": round(base.wall_s, 1),
        "wall_time_s": round(wall_s, 1),
        "setups": {setup: summarise_setup(records, setup, args.slowdowns) for setup in (*GATES, PROCESSES_5)},
        "sessions": records,
    }
    add_cost_ratios(figures["setups"])
    return figures, markdown(figures)


def write_out(args: argparse.Namespace, figures: dict[str, Any], table: str) -> None:
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
        args.out.with_suffix(".md").write_text(table)


def progress(records: list[dict[str, Any]]) -> str:
    """Failures so far per gate and kind, e.g. "ab aa 0 ab0.1 3 | saved aa 1 ab0.1 2 | ..."."""
    parts = []
    for setup in GATES:
        kinds: dict[str, int] = {}
        for record in records:
            if record["setup"] == setup:
                kinds[record["kind"]] = kinds.get(record["kind"], 0) + record["failed"]
        parts.append(f"{setup} " + " ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
    return " | ".join(parts)


def median_of(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 4) if found else None


def summarise_setup(records: list[dict[str, Any]], setup: str, slowdowns: list[float]) -> dict[str, Any]:
    """A setup's figures: failures per kind, median wall times, and for ab the paired changes."""
    rows = [r for r in records if r["setup"] == setup]
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind in (AA, *map(kind_of, slowdowns))}
    per_trial: dict[int, float] = {}
    for row in rows:  # a session judged by two gates is counted once per gate
        per_trial[row["trial"]] = per_trial.get(row["trial"], 0.0) + row["session_wall_s"]
    summary: dict[str, Any] = {
        "median_session_wall_s": median_of([r["session_wall_s"] for r in rows]),
        "median_item_wall_s": median_of([r["item_wall_s"] for r in rows]),
        "median_trial_wall_s": median_of(list(per_trial.values())),
    }
    if setup == PROCESSES_5:
        return {"sessions": len(rows), **summary}
    summary = {
        "false_failures": sum(r["failed"] for r in by_kind[AA]),
        "aa_sessions": len(by_kind[AA]),
        "catches": {kind: sum(r["failed"] for r in found) for kind, found in by_kind.items() if kind != AA},
        "ab_sessions": {kind: len(found) for kind, found in by_kind.items() if kind != AA},
        **summary,
    }
    if setup == SAVED:
        summary["remeasured"] = {kind: sum(r["remeasured"] for r in found) for kind, found in by_kind.items()}
    if setup == AB:
        summary["paired_time"] = {kind: paired_summary(found) for kind, found in by_kind.items()}
    return summary


def paired_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ab sessions of one kind: median paired change of time, median interval width, the verdicts."""
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    return {
        "median_change": median_of([r["change"] for r in rows]),
        "median_ci_width": median_of([r["ci_width"] for r in rows]),
        "verdicts": statuses,
    }


def add_cost_ratios(setups: dict[str, dict[str, Any]]) -> None:
    """Each gate's median wall times over processes-5's: what a gate costs next to measuring the item once
    in 5 worker processes."""
    reference = setups[PROCESSES_5]
    for setup in GATES:
        for what in ("session", "item"):
            ours, theirs = setups[setup][f"median_{what}_wall_s"], reference[f"median_{what}_wall_s"]
            ratio = round(ours / theirs, 2) if ours and theirs else None
            setups[setup][f"{what}_wall_to_processes_5"] = ratio


def markdown(figures: dict[str, Any]) -> str:
    """The figures as two Markdown tables: every setup, then the ab setup's paired changes per kind."""
    setups = figures["setups"]
    kinds = [kind_of(s) for s in figures["slowdowns"]]

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} s"

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:+.1%}"

    head = ["setup", "false failures (A/A)", *(f"caught +{s:.0%}" for s in figures["slowdowns"])]
    head += ["session (median)", "item (median)", "trial (median)", "item / processes-5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setup in (*GATES, PROCESSES_5):
        found = setups[setup]
        if setup == PROCESSES_5:
            cells = ["-"] * (1 + len(kinds))
        else:
            cells = [f"{found['false_failures']} / {found['aa_sessions']}"]
            cells += [f"{found['catches'][k]} / {found['ab_sessions'][k]}" for k in kinds]
        cells += [seconds(found[f"median_{what}_wall_s"]) for what in ("session", "item", "trial")]
        cells.append(ratio(found.get("item_wall_to_processes_5", 1.0)))
        lines.append("| " + " | ".join([LABELS[setup], *cells]) + " |")
    lines += [
        "",
        "| ab sessions | median paired change of time | median CI width | verdicts |",
        "|---|---|---|---|",
    ]
    for kind, found in setups[AB]["paired_time"].items():
        verdicts = ", ".join(f"{status} {count}" for status, count in sorted(found["verdicts"].items()))
        width = found["median_ci_width"]
        lines.append(
            f"| {kind} | {percent(found['median_change'])} | {'-' if width is None else f'{width:.1%}'} "
            f"| {verdicts} |"
        )
    title = (
        f"{figures['runs']} trials, {figures['model']}, load {figures['load']}, "
        f"wall time {figures['wall_time_s'] / 60:.0f} min"
    )
    return "\n".join([title, "", *lines]) + "\n"


# ---- shared by both modes ----


@contextlib.contextmanager
def load_beside(args: argparse.Namespace) -> Iterator[None]:
    """--busy or --bursts: the load running beside the sessions while the block runs."""
    if not (args.busy or args.bursts):
        yield
        return
    # In its own process group, so that killing it stops its pool too.
    code = BURNER if args.busy else BURSTS
    burner = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        yield
    finally:
        os.killpg(burner.pid, signal.SIGKILL)
        burner.wait()


def load_name(args: argparse.Namespace) -> str:
    return "busy" if args.busy else "bursts" if args.bursts else "none"


def bench_folder(folder: Path) -> Path:
    """``folder`` with the bench, its slowdown module and the conftest that preloads it."""
    (folder / "test_bench.py").write_text(BENCH)
    (folder / "gate_slowdown.py").write_text(SLOWDOWN_MODULE)
    (folder / "conftest.py").write_text(CONFTEST)
    return folder


def keep_jsons(folder: Path, keep: Path | None) -> None:
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        for path in folder.glob("*.json"):
            shutil.copy(path, keep / path.name)


def fractions(text: str) -> list[float]:
    """``0.05,0.10`` as [0.05, 0.1]: each a slowdown above 0."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give slowdowns above 0, e.g. 0.05,0.10")
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--compare-setups",
        action="store_true",
        help="compare the ab, saved-baseline and pytest-benchmark gates on interleaved sessions (see above)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=20,
        help="A/A runs and A/B runs, each; --compare-setups: trials (default 20)",
    )
    parser.add_argument(
        "--slowdown", type=float, default=0.10, help="injected slowdown of A/B (default 0.10)"
    )
    parser.add_argument(
        "--slowdowns",
        type=fractions,
        default=[0.05, 0.10],
        help="--compare-setups: the injected slowdowns, one A/B session each per trial (default 0.05,0.10)",
    )
    parser.add_argument("--model", default="gpt2", help="the model spec of the item (default gpt2)")
    parser.add_argument(
        "--rounds",
        type=int,
        help="measured rounds per run (default 20; --compare-setups: the plugin's default unless given)",
    )
    parser.add_argument(
        "--ab-pairs", type=int, help="--compare-setups: --tbench-ab-pairs (default: the plugin's, 8)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="--compare-setups: seeds the order of each trial (default 0)"
    )
    parser.add_argument(
        "--processes", type=int, default=5, help="worker processes the rounds are spread over (default 5)"
    )
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=3,
        help="unchanged runs pooled into the gate's baseline: the newest N, as a main branch keeps them "
        "(default 3; 1 = one fixed baseline run)",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the sessions (default 1)")
    parser.add_argument(
        "--retries", type=int, default=1, help="--tbench-compare-retries of the sessions (default 1)"
    )
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--busy", action="store_true", help="burn one CPU core beside every session")
    load.add_argument("--bursts", action="store_true", help="burn every core in bursts (5-30 s of 25-120 s)")
    parser.add_argument(
        "--out", type=Path, help="write the figures as JSON here (--compare-setups: and Markdown beside, .md)"
    )
    parser.add_argument("--keep", type=Path, help="copy every session's JSON into this folder")
    args = parser.parse_args()
    if args.rounds is None and not args.compare_setups:
        args.rounds = 20
    return args


def main() -> None:
    args = parse_args()
    if not args.compare_setups:
        gate_runs(args)
        return
    figures, table = compare_setups(args)
    print(json.dumps({k: v for k, v in figures.items() if k != "sessions"}, indent=2))
    print(table)
    write_out(args, figures, table)


def gate_runs(args: argparse.Namespace) -> None:
    """The mode without --compare-setups: this plugin's gate as CI runs it, A/A and A/B alternating."""
    started = time.perf_counter()
    counts = dict.fromkeys(COUNTS, 0)
    with load_beside(args), tempfile.TemporaryDirectory() as tmp:
        folder = bench_folder(Path(tmp))
        # Unchanged runs, saved as a main branch saves them: the first ones only make the baseline; each
        # A/A run is saved too once judged (with --baseline-runs 1 the first run stays the only baseline).
        history = [
            run_session(folder, f"base{i}", 0.0, args, save=True).run for i in range(args.baseline_runs)
        ]
        medians: dict[str, list[float]] = {"aa": [], "ab": []}
        for index in range(args.runs):
            for kind, slowdown in (("aa", 0.0), ("ab", args.slowdown)):
                keep = kind == "aa" and args.baseline_runs > 1
                session = run_session(folder, f"{kind}{index}", slowdown, args, save=keep)
                first = session.first["benchmarks"][0]["stats"]["data"]
                medians[kind].append(statistics.median(first))
                ours_first, theirs = judge_first(history, session, args.baseline_runs)
                if ours_first != (session.gate_failed or session.remeasured):
                    print(f"warning: {kind}{index}: the session's gate and the bench disagree", flush=True)
                counts[f"{kind}_ours"] += session.gate_failed
                counts[f"{kind}_ours_first"] += ours_first
                counts[f"{kind}_pytest_benchmark"] += theirs
                counts[f"{kind}_remeasured"] += session.remeasured
                if keep:
                    history.append(session.run)
            print(f"run {index + 1}/{args.runs}: {counts}", flush=True)
        keep_jsons(folder, args.keep)

    aa, ab = statistics.median(medians["aa"]), statistics.median(medians["ab"])
    first_median = history[0]["benchmarks"][0]["stats"]["median"]

    def rule(name: str) -> dict[str, int]:
        return {"false_failures": counts[f"aa_{name}"], "detections": counts[f"ab_{name}"]}

    figures = {
        "runs": args.runs,
        "slowdown": args.slowdown,
        "rounds": args.rounds,
        "processes": args.processes,
        "retries": args.retries,
        "threads": args.threads,
        "load": load_name(args),
        "baseline_runs": args.baseline_runs,
        "first_baseline_median_ms": round(first_median * 1000, 2),
        "measured_slowdown": round(ab / aa - 1, 3),
        "aa_median_ms_range": [round(min(medians["aa"]) * 1000, 2), round(max(medians["aa"]) * 1000, 2)],
        "ab_median_ms_range": [round(min(medians["ab"]) * 1000, 2), round(max(medians["ab"]) * 1000, 2)],
        "wall_time_s": round(time.perf_counter() - started, 1),
        f"tbench time:5%, {args.retries} retries": rule("ours"),
        "tbench time:5%, first measurement only": rule("ours_first"),
        "pytest-benchmark mean:5%, first measurement": rule("pytest_benchmark"),
        "re-measured": {"aa": counts["aa_remeasured"], "ab": counts["ab_remeasured"]},
        "session_median_to_first_baseline": {
            kind: [round(m / first_median, 3) for m in values] for kind, values in medians.items()
        },
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
