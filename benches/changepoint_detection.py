"""Which change-point method finds the steps in a benchmark's history, and which cries wolf?

A benchmark of the methods `tbench trend` could use (not a test), on synthetic series: 60 points of a level
of 1.0 with Gaussian noise of sd 0.015 (1.5% of the level), and

- the issue's setup: a +4% step at point 40 (the first point of the new level), and flat series (no step);
- harder cases: a +2% step at 40; a +4% step at 55 (5 points after it); two steps (+4% at 20, back down at
  40); a flat series with one outlier (+20% at point 30); a slow drift (+4% over the 60 points, no step),
  which should not come out as a staircase;
- noise shaped like CI history (issue 28), each flat and with the +4% step at 40, marginal sd 0.015 where it
  has one: Student t with 3 degrees of freedom; AR(1) with phi 0.5 and 0.8 (a machine slow tonight tends to
  be slow tomorrow); a bimodal runner (Gaussian noise, and one session in five on a machine kind 6% slower);
  slow spells (Gaussian noise and two spells of 1-3 sessions each at +5% to +15%). The iid Gaussian cases run
  --iid-seeds series (200 by default).

Each case has --seeds series (numpy's default_rng, seeded by the case's name and the seed F..F+N-1, F the
--first-seed, 0 by default: --first-seed 50 is a second draw of 50; so the flat
series are not the step series less their step). A true step is found when a step is reported within +-3
points of it in its direction; "extra" counts the series with any step reported beside the true ones (on
flat and outlier series, every reported step is a false alarm). Times are per series, on this machine.

    python benches/changepoint_detection.py [--seeds 50] [--iid-seeds 200] [--first-seed 0]
                                            [--rate-seeds 1000] [--otava-python PATH]
                                            [--out benches/changepoint_detection.md]

Methods:
- tbench: pytest_tbench.history.changepoints.detect (outliers replaced by a running median, ruptures' PELT
  proposes, the candidates taken forward and pruned back by a test under an AR(1) noise model fitted to the
  accepted breaks, corrected for the search by the Hunter-Worsley bound; short spells dropped, and levels
  cut off by either end of the series that may be spells); "tbench, outliers kept" is the same without
  the first move;
- tbench 2026-11: the detector before issue 28 (benches/changepoints_2026_11.py: noise from neighbour
  differences, a pooled Student t test that assumes independent points);
- ruptures PELT alone: PELT (l2 cost) with a BIC penalty, 2 sd^2 ln n, sd from the neighbours' differences;
- asv: asv.step_detect.detect_steps, as asv runs it on a benchmark's history;
- Otava: Apache Otava's E-Divisive means as `otava analyze` runs it (Hunter's windowed split and merge,
  its defaults: window 50, p 0.001), and Matteson and James' original E-Divisive (permutation test, 100
  permutations, p 0.05). Otava pins numpy and scipy to older versions than this project's, so it runs out
  of process: --otava-python names a Python that has apache-otava (python -m venv DIR && DIR/bin/pip
  install apache-otava); without it Otava is left out of the table.

asv is imported in process: install it beside this project's packages, or put a folder that has it on
PYTHONPATH (pip install --target DIR asv).
--rate-seeds N measures tbench (and asv) again over N seeds per case: the rates behind the counts of 50.
The table is printed as Markdown and written to --out with the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import platform
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_POINTS = 60
NOISE = 0.015  # sd of the noise, relative to the level of 1.0
TOLERANCE = 3  # points either side of a true step
TBENCH = "tbench (Hampel + PELT + AR(1)-corrected test)"
OLD = "tbench 2026-11 (independent points)"

# A method's answer for one series: the steps it reports, as (index of the first point of the new level,
# direction: +1 up, -1 down).
Found = list[tuple[int, int]]


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[tuple[int, float], ...] = ()  # (index, relative change of the level)
    outlier: tuple[int, float] | None = None  # (index, relative change of that point alone)
    drift: float = 0.0  # relative change of the level over the series, linear
    noise: str = "iid Gaussian"  # a key of NOISES

    def series(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng([zlib.crc32(self.name.encode()), seed])
        level = np.ones(N_POINTS)
        for index, change in self.steps:
            level[index:] *= 1.0 + change
        level *= 1.0 + self.drift * np.arange(N_POINTS) / (N_POINTS - 1)
        values = level * (1.0 + NOISES[self.noise](rng))
        if self.outlier is not None:
            index, change = self.outlier
            values[index] += change * level[index]
        return values

    def truth(self) -> list[tuple[int, int]]:
        return [(index, 1 if change > 0 else -1) for index, change in self.steps]


def _iid(rng: np.random.Generator) -> np.ndarray:
    return NOISE * rng.standard_normal(N_POINTS)


def _student(rng: np.random.Generator) -> np.ndarray:
    return NOISE / math.sqrt(3.0) * rng.standard_t(3, N_POINTS)  # t3's variance is 3


def _ar1(phi: float) -> Callable[[np.random.Generator], np.ndarray]:
    def noise(rng: np.random.Generator) -> np.ndarray:
        z = rng.standard_normal(N_POINTS)
        e = np.empty(N_POINTS)
        e[0] = z[0]  # the stationary distribution: no burn-in needed
        for t in range(1, N_POINTS):
            e[t] = phi * e[t - 1] + math.sqrt(1.0 - phi**2) * z[t]
        return NOISE * e

    return noise


def _bimodal(rng: np.random.Generator) -> np.ndarray:
    return NOISE * rng.standard_normal(N_POINTS) + 0.06 * (rng.random(N_POINTS) < 0.2)


def _spells(rng: np.random.Generator) -> np.ndarray:
    e = NOISE * rng.standard_normal(N_POINTS)
    for _ in range(2):
        length = int(rng.integers(1, 4))
        start = int(rng.integers(0, N_POINTS - length))
        e[start : start + length] += rng.uniform(0.05, 0.15)
    return e


NOISES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "iid Gaussian": _iid,
    "Student t, 3 df": _student,
    "AR(1), phi 0.5": _ar1(0.5),
    "AR(1), phi 0.8": _ar1(0.8),
    "bimodal runner (20% of sessions +6%)": _bimodal,
    "slow spells (2 of 1-3 sessions, +5-15%)": _spells,
}
MAIN = Case("step +4% at 40", steps=((40, 0.04),))
FLAT = Case("flat")
# (flat, step) per noise; the iid pair is the issue's own setup, so that its series are the same.
NOISE_CASES = [(FLAT, MAIN)] + [
    (Case(f"flat, {noise}", noise=noise), Case(f"step +4% at 40, {noise}", steps=((40, 0.04),), noise=noise))
    for noise in list(NOISES)[1:]
]
HARDER = [
    Case("step +2% at 40", steps=((40, 0.02),)),
    Case("step +4% at 55", steps=((55, 0.04),)),
    Case("two steps: +4% at 20, back at 40", steps=((20, 0.04), (40, -1 + 1 / 1.04))),
    Case("outlier: flat, +20% at 30", outlier=(30, 0.20)),
    Case("drift: +4% over 60 points", drift=0.04),
]


@dataclass
class Tally:
    series: int = 0
    found: int = 0  # series whose true steps were all found
    extra: int = 0  # series with a reported step beside the true ones
    counts: list[int] = field(default_factory=list)  # steps reported, per series
    seconds: list[float] = field(default_factory=list)

    def add(self, case: Case, found: Found, seconds: float) -> None:
        truth = case.truth()
        unmatched = list(found)
        hits = 0
        for index, direction in truth:
            match = next((f for f in unmatched if abs(f[0] - index) <= TOLERANCE and f[1] == direction), None)
            if match is not None:
                unmatched.remove(match)
                hits += 1
        self.series += 1
        self.found += hits == len(truth)
        self.extra += bool(unmatched)
        self.counts.append(len(found))
        self.seconds.append(seconds)

    def ms(self) -> float:
        return 1e3 * float(np.median(self.seconds))


# ---- the methods, each over a batch of series ----


def run_tbench(batch: Sequence[np.ndarray], **options: object) -> list[tuple[Found, float]]:
    from pytest_tbench.history.changepoints import detect

    return _timed(detect, batch, **options)


def run_old(batch: Sequence[np.ndarray]) -> list[tuple[Found, float]]:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("changepoints_2026_11.py")
    spec = importlib.util.spec_from_file_location("changepoints_2026_11", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return _timed(module.detect, batch)


def _timed(
    detect: Callable[..., list[Any]], batch: Sequence[np.ndarray], **options: object
) -> list[tuple[Found, float]]:
    out = []
    for values in batch:
        start = time.perf_counter()
        steps = detect(values, **options)
        seconds = time.perf_counter() - start
        out.append(([(s.index, 1 if s.ratio > 1 else -1) for s in steps], seconds))
    return out


def run_ruptures_bic(batch: Sequence[np.ndarray]) -> list[tuple[Found, float]]:
    import ruptures

    out = []
    for values in batch:
        start = time.perf_counter()
        diffs = np.diff(values)
        sd = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2)
        bic = 2 * sd**2 * math.log(len(values))
        ends = ruptures.Pelt(model="l2", min_size=3).fit(values).predict(pen=bic)
        seconds = time.perf_counter() - start
        bounds = [0, *ends]
        found = []
        for a, b, c in zip(bounds, bounds[1:], bounds[2:], strict=False):
            found.append((b, 1 if values[b:c].mean() > values[a:b].mean() else -1))
        out.append((found, seconds))
    return out


def run_asv(batch: Sequence[np.ndarray]) -> list[tuple[Found, float]]:
    from asv.step_detect import detect_steps

    out = []
    for values in batch:
        start = time.perf_counter()
        segments = detect_steps(list(values))
        seconds = time.perf_counter() - start
        found = [(right[0], 1 if right[2] > left[2] else -1) for left, right in itertools.pairwise(segments)]
        out.append((found, seconds))
    return out


OTAVA_RUNNER = """
import json, sys, time
import numpy as np
from otava.analysis import compute_change_points, compute_change_points_orig
request = json.load(sys.stdin)
out = []
for values in request["series"]:
    start = time.perf_counter()
    if request["original"]:
        points, _ = compute_change_points_orig(np.asarray(values), max_pvalue=0.05, seed=0)
    else:
        points, _ = compute_change_points(list(values))  # otava analyze's defaults: window 50, p 0.001
    seconds = time.perf_counter() - start
    found = []
    for p in points:
        before, after = np.mean(values[: p.index]), np.mean(values[p.index :])
        found.append([int(p.index), 1 if after > before else -1])
    out.append([found, seconds])
json.dump(out, sys.stdout)
"""


def otava_method(python: str, original: bool) -> Callable[[Sequence[np.ndarray]], list[tuple[Found, float]]]:
    def run(batch: Sequence[np.ndarray]) -> list[tuple[Found, float]]:
        request = json.dumps({"series": [list(map(float, v)) for v in batch], "original": original})
        done = subprocess.run(
            [python, "-c", OTAVA_RUNNER], input=request, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"Otava failed under {python}: {done.stderr.strip()[-2000:]}")
        return [([(int(i), int(d)) for i, d in found], float(s)) for found, s in json.loads(done.stdout)]

    return run


# ---- the table ----


def measure(
    methods: dict[str, Callable[[Sequence[np.ndarray]], list[tuple[Found, float]]]],
    cases: Sequence[Case],
    seeds: int,
    first: int = 0,
) -> dict[str, dict[str, Tally]]:
    tallies: dict[str, dict[str, Tally]] = {}
    for method, run in methods.items():
        tallies[method] = {}
        for case in cases:
            batch = [case.series(seed) for seed in range(first, first + seeds)]
            tally = Tally()
            for found, seconds in run(batch):
                tally.add(case, found, seconds)
            tallies[method][case.name] = tally
            print(
                f"  {method}: {case.name}: {tally.found}/{seeds} found, {tally.extra} extra", file=sys.stderr
            )
    return tallies


def main_table(tallies: dict[str, dict[str, Tally]], seeds: int) -> list[str]:
    lines = [
        f"| method | detected /{seeds} | false alarms on flat /{seeds} | extra steps beside it /{seeds} "
        "| time per series (ms, median) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, by_case in tallies.items():
        step, flat = by_case[MAIN.name], by_case[FLAT.name]
        lines.append(f"| {method} | {step.found} | {flat.extra} | {step.extra} | {step.ms():.1f} |")
    return lines


def harder_table(tallies: dict[str, dict[str, Tally]], seeds: int) -> list[str]:
    outlier, drift = HARDER[3].name, HARDER[4].name
    lines = [
        f"| method | +2% at 40: detected (extra) /{seeds} | +4% at 55: detected (extra) /{seeds} "
        f"| two steps: both found (extra) /{seeds} | outlier: false alarms /{seeds} "
        f"| drift: series with 1 step / 2+ steps /{seeds} |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, by_case in tallies.items():
        cells = [f"{by_case[c.name].found} ({by_case[c.name].extra})" for c in HARDER[:3]]
        counts = by_case[drift].counts
        lines.append(
            f"| {method} | {' | '.join(cells)} | {by_case[outlier].extra} "
            f"| {counts.count(1)} / {sum(c >= 2 for c in counts)} |"
        )
    return lines


def noise_table(tallies: dict[str, dict[str, Tally]]) -> list[str]:
    names = list(NOISES)
    lines = [
        "| method | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for method, by_case in tallies.items():
        cells = []
        for flat, step in NOISE_CASES:
            a, b = by_case[flat.name], by_case[step.name]
            cells.append(f"{a.extra}/{a.series} · {b.found}/{b.series}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def rate_table(tallies: dict[str, dict[str, Tally]], seeds: int) -> list[str]:
    names = [MAIN.name, FLAT.name, *(c.name for c in HARDER)]
    lines = [
        "| method | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for method, by_case in tallies.items():
        cells = []
        for name in names:
            tally = by_case[name]
            if name in (FLAT.name, HARDER[3].name):
                cells.append(f"false alarms {100 * tally.extra / seeds:.1f}%")
            elif name == HARDER[4].name:
                cells.append(f"2+ steps {100 * sum(c >= 2 for c in tally.counts) / seeds:.1f}%")
            else:
                cells.append(f"{100 * tally.found / seeds:.1f}% (extra {100 * tally.extra / seeds:.1f}%)")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=50, help="series per case (default 50)")
    parser.add_argument(
        "--iid-seeds", type=int, default=200, help="series per iid Gaussian case, flat and +4%% (default 200)"
    )
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed of each case (default 0)")
    parser.add_argument("--rate-seeds", type=int, default=0, help="series per case for the rates (0: none)")
    parser.add_argument("--otava-python", default="", help="a Python with apache-otava installed")
    parser.add_argument("--out", default="", help="write the Markdown here too")
    args = parser.parse_args()
    if args.seeds < 1 or args.rate_seeds < 0:
        parser.error(f"--seeds must be 1 or more and --rate-seeds 0 or more: {args.seeds}, {args.rate_seeds}")

    methods: dict[str, Callable[[Sequence[np.ndarray]], list[tuple[Found, float]]]] = {
        TBENCH: run_tbench,
        OLD: run_old,
        "tbench, outliers kept": lambda batch: run_tbench(batch, outlier_sigmas=None),
        "ruptures PELT alone (BIC penalty)": run_ruptures_bic,
        "asv detect_steps": run_asv,
    }
    if args.otava_python:
        methods["Otava E-Divisive (Hunter: window 50, p 0.001)"] = otava_method(args.otava_python, False)
        methods["Otava, original E-Divisive (permutations, p 0.05)"] = otava_method(args.otava_python, True)
    cases = [MAIN, FLAT, *HARDER]
    tallies = measure(methods, [MAIN, FLAT], args.iid_seeds, args.first_seed)
    for method, by_case in measure(
        methods, [*HARDER, *(c for pair in NOISE_CASES[1:] for c in pair)], args.seeds, args.first_seed
    ).items():
        tallies[method].update(by_case)

    today = datetime.date.today().isoformat()
    lines = [
        "# Change-point detection on synthetic series",
        "",
        f"Measured {today} on {machine()} by `benches/changepoint_detection.py --seeds {args.seeds} "
        f"--iid-seeds {args.iid_seeds}"
        + (f" --first-seed {args.first_seed}" if args.first_seed else "")
        + (f" --rate-seeds {args.rate_seeds}" if args.rate_seeds else "")
        + "`. Series of 60 points, level 1.0, Gaussian noise sd 0.015; a step is found within +-3 points in "
        "its direction.",
        "",
        "## Noise shaped like CI history",
        "",
        "Each cell: false alarms on flat series · +4% steps at point 40 found (within 3 points). Marginal sd "
        "0.015 (1.5% of the level) except the bimodal runner and the slow spells, which add their slow "
        "sessions to Gaussian noise of sd 0.015.",
        "",
        *noise_table(tallies),
        "",
        "## The issue's setup: +4% step at point 40, and flat series",
        "",
        *main_table(tallies, args.iid_seeds),
        "",
        "## Harder cases",
        "",
        "Extra: series with a step reported beside the true ones. Drift: +4% over 60 points, no step.",
        "",
        *harder_table(tallies, args.seeds),
    ]
    if args.rate_seeds:
        rated = {name: methods[name] for name in (TBENCH, "asv detect_steps")}
        rates = measure(rated, cases, args.rate_seeds)
        lines += [
            "",
            f"## Rates over {args.rate_seeds} series per case",
            "",
            *rate_table(rates, args.rate_seeds),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
