"""The JSON a run writes is the plugin's public contract: its keys, and the unit each key's name promises.

A tiny forward, generate and train session runs in this process and once more spread over two worker
processes; the keys it writes (``extra_info`` per launcher and mode, ``machine_info.tbench``, the top-level
``tbench``) must equal the committed list in tests/json_keys.txt, so that a refactor that drops or renames a
key fails here. A key that is added on purpose goes into the list: regenerate it with
``TBENCH_WRITE_JSON_KEYS=1 pytest tests/test_json_contract.py`` and review the diff.

An A/B run's keys are pinned in tests/json_keys_ab.txt by the A/B session of tests/test_ab.py
(``check_ab_keys``).

Not covered (they need a GPU or a regressing baseline, or a compile): the CUDA memory keys,
``gate_earlier_attempts`` that the gate adds to a re-measured item (tests/test_gate.py covers that one), and a
compiled item's ``compile_time_s``, ``compile_warmup_rounds``, ``compile_frames`` and ``recompiles_measured``
(tests/test_compile.py covers those). Energy: the keys pinned are ``energy_unavailable`` alone, which a
machine without a readable meter writes, and so does one with a meter, as the tiny rounds here last far under
a meter's shortest window (0.1 s for RAPL); tests/test_limits.py covers the keys of a measured window.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import ALL_MODES_BENCH, TINY, run_json

KEYS_FILE = Path(__file__).with_name("json_keys.txt")
AB_KEYS_FILE = Path(__file__).with_name("json_keys_ab.txt")


# The runs whose keys are pinned: the in-process launcher, and the worker processes with their pooling.
LAUNCHERS = {"in-process": [], "processes=2": ["--tbench-processes", "2"]}

# Peaks given, so that MFU and MBU are written on a CPU machine too (the table knows GPUs only).
PEAKS = ["--tbench-peak-tflops", "1", "--tbench-peak-bandwidth", "20"]

# Numeric keys whose name carries no unit, and why: everything else numeric ends in _s (seconds), _per_s (a
# rate per second), _bytes (bytes), _j (joules), _w (watts), _tflops (1e12 FLOPs per second), or names its
# count of FLOPs (flops_per_call, prefill_flops).
UNITLESS = {
    # counts
    "batch_size",
    "seq_len",
    "rounds",
    "warmup_rounds",
    "measured_rounds",
    "samples_per_call",
    "tokens_per_call",
    "num_parameters",
    "quantized_layers",
    "new_tokens",
    "processes",
    "process_rounds",
    "train_steps",
    "generate_compiles_warmup",
    "generate_recompiles_measured",
    "generated_tokens_per_round",
    "prefill_tokens_per_round",
    "decode_tokens_per_round",
    "decode_token_latency_count",
    "cpu_count_logical",
    "cpu_count_physical",
    "torch_num_threads",
    "gpu_count",
    # ratios: achieved over the peak (the run below gives peaks, so that they are written), a share
    "mfu",
    "mbu",
    "changed_tensors_fraction",
    # a loss value
    "last_loss",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value: Any) -> list[float] | None:
    """The key's numeric value(s) (a number or a list of numbers); None for any other value."""
    if _is_number(value):
        return [value]
    if isinstance(value, list) and value and all(_is_number(x) for x in value):
        return list(value)
    return None


def _session_json(pytester: pytest.Pytester, launcher: list[str]) -> dict[str, Any]:
    pytester.makepyfile(test_bench=ALL_MODES_BENCH)
    result, data = run_json(pytester, *TINY, "--tbench-new-tokens", "3", *PEAKS, *launcher)
    result.assert_outcomes(passed=3)
    return data


def _key_lines(launcher: str, data: dict[str, Any]) -> set[str]:
    infos = [bench["extra_info"] for bench in data["benchmarks"]]
    lines = {f"{launcher} {info['mode']} {key}" for info in infos for key in info}
    lines |= {f"machine_info.tbench * {key}" for key in data["machine_info"]["tbench"]}
    lines |= {f"tbench * {key}" for key in data["tbench"]}
    return lines


def _unit_problems(data: dict[str, Any]) -> list[str]:
    return unit_problems([b["extra_info"] for b in data["benchmarks"]] + [data["machine_info"]["tbench"]])


def unit_problems(records: list[dict[str, Any]]) -> list[str]:
    problems = []
    for record in records:
        for key, value in record.items():
            numbers = _numbers(value)
            if numbers is None:
                continue
            if key.endswith("_bytes"):
                if not all(isinstance(x, int) and x >= 0 for x in numbers):
                    problems.append(f"{key}={value!r}: bytes are whole and not negative")
            elif key.endswith(("_s", "_j", "_w", "_tflops")):  # seconds, rates, joules, watts, TFLOP/s
                if not all(x >= 0 for x in numbers):
                    problems.append(f"{key}={value!r}: seconds, rates, energy and power are not negative")
            elif "flops" in key.split("_"):  # a count of FLOPs
                if not all(isinstance(x, int) and x >= 0 for x in numbers):
                    problems.append(f"{key}={value!r}: FLOPs are counted whole and not negative")
            elif key not in UNITLESS:
                suffixes = "_s, _per_s, _bytes, _j, _w, _tflops"
                problems.append(f"{key}={value!r}: numeric key without a unit suffix ({suffixes})")
    return problems


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_json_keys_and_units(pytester: pytest.Pytester, launcher: str) -> None:
    data = _session_json(pytester, LAUNCHERS[launcher])
    assert not _unit_problems(data)
    found = _key_lines(launcher, data)
    committed = [line for line in KEYS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    shared = {line for line in committed if line.split()[0] not in LAUNCHERS}
    expected = {line for line in committed if line.split()[0] == launcher} | shared
    if os.environ.get("TBENCH_WRITE_JSON_KEYS"):
        other = {line for line in committed if line.split()[0] in LAUNCHERS and line.split()[0] != launcher}
        header = [line for line in KEYS_FILE.read_text().splitlines() if line.startswith("#")]
        KEYS_FILE.write_text("\n".join([*header, *sorted(other | found)]) + "\n")
        return
    assert sorted(found - expected) == [], "new keys: add them to tests/json_keys.txt"
    assert sorted(expected - found) == [], "keys the JSON no longer has"


def check_ab_keys(data: dict[str, Any]) -> None:
    """The keys of a run measured under --tbench-ab (tests/test_ab.py runs one and calls this) must equal the
    committed list in tests/json_keys_ab.txt: ``WHERE KEY``, WHERE being extra_info, ab_base, ab,
    ab.sides.SIDE or ab.verdicts. Regenerated like json_keys.txt."""
    lines: set[str] = set()
    for bench in data["benchmarks"]:
        info, ab = bench["extra_info"], bench["extra_info"]["ab"]
        lines |= {f"extra_info {key}" for key in info} | {f"ab_base {key}" for key in info["ab_base"]}
        lines |= {f"ab {key}" for key in ab}
        lines |= {f"ab.sides.{side} {key}" for side, found in ab["sides"].items() for key in found}
        lines |= {f"ab.verdicts {key}" for verdict in ab["verdicts"] for key in verdict}
    # The verdicts' numbers are in the unit their "unit" key names: only the two sides' records are checked.
    sides = [record for b in data["benchmarks"] for record in (b["extra_info"], b["extra_info"]["ab_base"])]
    assert not unit_problems(sides)
    header = [line for line in AB_KEYS_FILE.read_text().splitlines() if line.startswith("#")]
    if os.environ.get("TBENCH_WRITE_JSON_KEYS"):
        AB_KEYS_FILE.write_text("\n".join([*header, *sorted(lines)]) + "\n")
        return
    committed = {line for line in AB_KEYS_FILE.read_text().splitlines() if line and not line.startswith("#")}
    assert sorted(lines - committed) == [], "new keys: add them to tests/json_keys_ab.txt"
    assert sorted(committed - lines) == [], "keys the JSON no longer has"


def test_unitless_keys_are_written() -> None:
    """Every exception to the suffix rule is a key the JSON has (a stale exception hides nothing)."""
    keys = {line.split()[2] for line in KEYS_FILE.read_text().splitlines() if line and line[0] != "#"}
    assert sorted(UNITLESS - keys) == []
