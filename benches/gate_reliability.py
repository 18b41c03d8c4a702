"""How often does a regression gate cry wolf, and how often does it catch a real slowdown?

A benchmark of the gate itself (not a test): it runs the same forward bench many times as separate pytest
sessions, unchanged (A/A) and with a known slowdown of the timed call (A/B), and judges every run with this
plugin's gate (`time:5%`: threshold and significance on per-process medians) and with pytest-benchmark's own
`--benchmark-compare-fail=mean:5%` rule (its code, applied to the same runs).

    python benches/gate_reliability.py --runs 20 --slowdown 0.10 [--baseline-runs 3] [--processes 5]
                                       [--threads 1] [--busy]

Baselines are kept as a main branch keeps them: the first --baseline-runs sessions are unchanged runs, every
A/A run joins them once judged, and each run is judged against the newest --baseline-runs of them pooled
(`--tbench-compare-last`; pytest-benchmark's rule against the newest one, as `--benchmark-compare` does).
--baseline-runs 1 judges every run against the first session alone.

The workload is gpt2 (real size, random weights) forward at batch 1 x 64 tokens, `--rounds` measured rounds
spread over `--processes` worker processes (`--tbench-processes`; 1 measures in the pytest process, as a
plain run does). The slowdown is injected in the workers by a module the forkserver preloads. --threads sets
OMP_NUM_THREADS of the sessions: on a small VM, multi-threaded timings move by 10-80% from one process to the
next while single-threaded ones stay within a few percent, and no gate can be tighter than the machine.
--busy runs a CPU-burning process beside every session, as another job on a CI runner would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
from pytest_tbench.launchers.isolated import preload

preload(["gate_slowdown"])
"""

MODEL = "gpt2"

BURNER = "while True:\n    pass\n"


def run_session(folder: Path, name: str, slowdown: float, args: argparse.Namespace) -> Path:
    out = folder / f"{name}.json"
    env = {**os.environ, "TBENCH_GATE_SLOWDOWN": str(slowdown), "HF_HUB_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    command = [
        sys.executable, "-m", "pytest", "test_bench.py", "-q", "-p", "no:cacheprovider",
        "--tbench-models", MODEL, "--tbench-batch-sizes", "1", "--tbench-seq-lens", "64",
        "--tbench-rounds", str(args.rounds), "--tbench-warmup", "3",
        "--tbench-processes", str(args.processes), f"--benchmark-json={out}",
    ]  # fmt: skip
    subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return out


def judge(history: list[dict], now: dict, pooled: int) -> tuple[bool, bool]:
    """(this plugin's gate fails, pytest-benchmark's mean:5% fails) for one run. Ours pools the newest
    ``pooled`` unchanged runs into its baseline (--tbench-compare-last); pytest-benchmark compares with the
    newest one, as --benchmark-compare does."""
    ours = bool(compare_runs(pool_runs(history[-pooled:]), now, parse_criteria("time:5%")).regressions)
    theirs_check = parse_compare_fail("mean:5%")
    base = history[-1]["benchmarks"][0]["stats"]
    theirs = bool(theirs_check.fails(now["benchmarks"][0]["stats"], base))
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
    parser.add_argument("--busy", action="store_true", help="burn one CPU core beside every session")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="copy every session's JSON into this folder")
    args = parser.parse_args()

    burner = subprocess.Popen([sys.executable, "-c", BURNER]) if args.busy else None
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "test_bench.py").write_text(BENCH)
            (folder / "gate_slowdown.py").write_text(SLOWDOWN_MODULE)
            (folder / "conftest.py").write_text(CONFTEST)
            # Unchanged runs, as a main branch saves them: the first ones only make the baseline; each A/A
            # run joins them once judged (with --baseline-runs 1 the first run stays the only baseline).
            history = [
                json.loads(run_session(folder, f"base{i}", 0.0, args).read_text())
                for i in range(args.baseline_runs)
            ]
            medians: dict[str, list[float]] = {"aa": [], "ab": []}
            counts = {"aa_ours": 0, "aa_pytest_benchmark": 0, "ab_ours": 0, "ab_pytest_benchmark": 0}
            for index in range(args.runs):
                for kind, slowdown in (("aa", 0.0), ("ab", args.slowdown)):
                    path = run_session(folder, f"{kind}{index}", slowdown, args)
                    run = json.loads(path.read_text())
                    medians[kind].append(run["benchmarks"][0]["stats"]["median"])
                    ours_fails, theirs_fails = judge(history, run, args.baseline_runs)
                    counts[f"{kind}_ours"] += ours_fails
                    counts[f"{kind}_pytest_benchmark"] += theirs_fails
                    if kind == "aa" and args.baseline_runs > 1:
                        history.append(run)
                print(f"run {index + 1}/{args.runs}: {counts}", flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for path in folder.glob("*.json"):
                    shutil.copy(path, args.keep / path.name)
    finally:
        if burner is not None:
            burner.kill()

    ours, theirs = "tbench time:5%", "pytest-benchmark mean:5%"
    aa, ab = statistics.median(medians["aa"]), statistics.median(medians["ab"])
    figures = {
        "runs": args.runs,
        "slowdown": args.slowdown,
        "rounds": args.rounds,
        "processes": args.processes,
        "threads": args.threads,
        "busy": args.busy,
        "baseline_runs": args.baseline_runs,
        "first_baseline_median_ms": round(history[0]["benchmarks"][0]["stats"]["median"] * 1000, 2),
        "measured_slowdown": round(ab / aa - 1, 3),
        "aa_median_ms_range": [round(min(medians["aa"]) * 1000, 2), round(max(medians["aa"]) * 1000, 2)],
        "ab_median_ms_range": [round(min(medians["ab"]) * 1000, 2), round(max(medians["ab"]) * 1000, 2)],
        "wall_time_s": round(time.perf_counter() - started, 1),
        "false_failures": {ours: counts["aa_ours"], theirs: counts["aa_pytest_benchmark"]},
        "detections": {ours: counts["ab_ours"], theirs: counts["ab_pytest_benchmark"]},
        "session_median_to_first_baseline": {
            kind: [round(m / history[0]["benchmarks"][0]["stats"]["median"], 3) for m in values]
            for kind, values in medians.items()
        },
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
