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
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_benchmark.utils import parse_compare_fail

from pytest_tbench.compare.baseline import pool_runs
from pytest_tbench.compare.criteria import parse_criteria
from pytest_tbench.compare.runs import compare_runs

BENCH = """
def test_forward(tbench):
    tbench.forward()
"""

# The injected regression: every forward call takes SLOWDOWN longer than it would. Imported by the conftest
# (in-process runs) and preloaded by the forkserver (worker processes).
SLOWDOWN_MODULE = """
import dataclasses, os, time
import pytest_tbench.scenarios as scenarios

SLOWDOWN = float(os.environ.get("TBENCH_GATE_SLOWDOWN", "0"))

if SLOWDOWN and not getattr(scenarios, "slowed", False):
    original = scenarios.forward_work

    def slowed_work(loaded, case):
        work = original(loaded, case)

        def call():
            start = time.perf_counter()
            work.call()
            end = time.perf_counter() + SLOWDOWN * (time.perf_counter() - start)
            while time.perf_counter() < end:
                pass

        return dataclasses.replace(work, call=call)

    scenarios.forward_work = slowed_work
    scenarios.slowed = True
"""

CONFTEST = """
import gate_slowdown  # noqa: F401
from pytest_tbench.launchers.forkserver import preload

preload(["gate_slowdown"])
"""

MODEL = "gpt2"

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
    out = folder / f"{name}.json"
    env = {**os.environ, "TBENCH_GATE_SLOWDOWN": str(slowdown), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    command = [
        sys.executable, "-m", "pytest", "test_bench.py", "-q", "-p", "no:cacheprovider",
        "--tbench-models", MODEL, "--tbench-batch-sizes", "1", "--tbench-seq-lens", "64",
        "--tbench-rounds", str(args.rounds), "--tbench-warmup", "3",
        "--tbench-processes", str(args.processes), f"--benchmark-json={out}",
        f"--benchmark-storage=file://{folder / 'storage'}",
    ]  # fmt: skip
    if any((folder / "storage").rglob("*.json")):
        command += [
            "--tbench-compare", "--tbench-compare-last", str(args.baseline_runs),
            "--tbench-compare-fail", "time:5%", "--tbench-compare-retries", str(args.retries),
        ]  # fmt: skip
    if save:
        command.append("--benchmark-save=main")
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not out.is_file():
        raise SystemExit(f"session {name} ended with exit code {done.returncode}:\n{done.stdout[-3000:]}")
    return Session(json.loads(out.read_text()), gate_failed=done.returncode == 1)


@dataclass
class Session:
    run: dict[str, Any]
    gate_failed: bool  # the item failed in the session: every attempt regressed

    @property
    def entry(self) -> dict[str, Any]:
        return self.run["benchmarks"][0]

    @property
    def first(self) -> dict[str, Any]:
        """The run as its first measurement saw it (a re-measurement replaces it in the JSON)."""
        attempts = self.entry["extra_info"].get("gate_discarded_attempts")
        if not attempts:
            return self.run
        info = dict(self.entry["extra_info"])
        if "process_rounds" in attempts[0]:
            info["process_rounds"] = attempts[0]["process_rounds"]
        entry = {**self.entry, "stats": {"data": attempts[0]["rounds_s"]}, "extra_info": info}
        return {**self.run, "benchmarks": [entry]}

    @property
    def remeasured(self) -> bool:
        return bool(self.entry["extra_info"].get("gate_discarded_attempts"))


def judge_first(history: list[dict[str, Any]], session: Session, pooled: int) -> tuple[bool, bool]:
    """(this plugin's gate fails, pytest-benchmark's mean:5% fails) on the first measurement alone. Ours
    pools the newest ``pooled`` unchanged runs into its baseline (--tbench-compare-last); pytest-benchmark
    compares with the newest one, as --benchmark-compare does."""
    first = session.first
    ours = bool(compare_runs(pool_runs(history[-pooled:]), first, parse_criteria("time:5%")).regressions)
    data = first["benchmarks"][0]["stats"]["data"]
    base = history[-1]["benchmarks"][0]["stats"]
    theirs = bool(parse_compare_fail("mean:5%").fails({"mean": statistics.mean(data)}, base))
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="A/A runs and A/B runs, each (default 20)")
    parser.add_argument(
        "--slowdown", type=float, default=0.10, help="injected slowdown of A/B (default 0.10)"
    )
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds per run (default 20)")
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
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="copy every session's JSON into this folder")
    args = parser.parse_args()

    burner = None
    if args.busy or args.bursts:  # in its own process group, so that killing it stops its pool too
        code = BURNER if args.busy else BURSTS
        burner = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    started = time.perf_counter()
    counts = dict.fromkeys(COUNTS, 0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "test_bench.py").write_text(BENCH)
            (folder / "gate_slowdown.py").write_text(SLOWDOWN_MODULE)
            (folder / "conftest.py").write_text(CONFTEST)
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
                        print(
                            f"warning: {kind}{index}: the session's gate and the bench disagree", flush=True
                        )
                    counts[f"{kind}_ours"] += session.gate_failed
                    counts[f"{kind}_ours_first"] += ours_first
                    counts[f"{kind}_pytest_benchmark"] += theirs
                    counts[f"{kind}_remeasured"] += session.remeasured
                    if keep:
                        history.append(session.run)
                print(f"run {index + 1}/{args.runs}: {counts}", flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in folder.glob("*.json"):
                    shutil.copy(path, args.keep / path.name)
    finally:
        if burner is not None:
            os.killpg(burner.pid, signal.SIGKILL)

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
        "load": "busy" if args.busy else "bursts" if args.bursts else "none",
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
