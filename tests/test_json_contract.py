"""The JSON a run writes is the plugin's public contract: its keys, and the unit each key's name promises.

A tiny forward, generate and train session runs in this process and once more spread over two worker
processes; the keys it writes (``extra_info`` per launcher and mode, ``machine_info.tbench``, the top-level
``tbench``) must equal the committed list in tests/json_keys.txt, so that a refactor that drops or renames a
key fails here. A key that is added on purpose goes into the list: regenerate it with
``TBENCH_WRITE_JSON_KEYS=1 pytest tests/test_json_contract.py`` and review the diff.

Not covered (they need a GPU or a regressing baseline, or a compile): the CUDA memory keys,
``gate_earlier_attempts`` that the gate adds to a re-measured item (tests/test_gate.py covers that one), and a
compiled item's ``compile_time_s``, ``compile_warmup_rounds``, ``compile_frames`` and ``recompiles_measured``
(tests/test_compile.py covers those).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import ALL_MODES_BENCH, TINY, run_json

KEYS_FILE = Path(__file__).with_name("json_keys.txt")


# The runs whose keys are pinned: the in-process launcher, and the worker processes with their pooling.
LAUNCHERS = {"in-process": [], "processes=2": ["--tbench-processes", "2"]}

# Numeric keys whose name carries no unit, and why: everything else numeric ends in _s (seconds), _per_s (a
# rate per second) or _bytes (bytes).
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
    # a ratio and a loss value
    "changed_tensors_fraction",
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
    result, data = run_json(pytester, *TINY, "--tbench-new-tokens", "3", *launcher)
    result.assert_outcomes(passed=3)
    return data


def _key_lines(launcher: str, data: dict[str, Any]) -> set[str]:
    infos = [bench["extra_info"] for bench in data["benchmarks"]]
    lines = {f"{launcher} {info['mode']} {key}" for info in infos for key in info}
    lines |= {f"machine_info.tbench * {key}" for key in data["machine_info"]["tbench"]}
    lines |= {f"tbench * {key}" for key in data["tbench"]}
    return lines


def _unit_problems(data: dict[str, Any]) -> list[str]:
    records = [b["extra_info"] for b in data["benchmarks"]] + [data["machine_info"]["tbench"]]
    problems = []
    for record in records:
        for key, value in record.items():
            numbers = _numbers(value)
            if numbers is None:
                continue
            if key.endswith("_bytes"):
                if not all(isinstance(x, int) and x >= 0 for x in numbers):
                    problems.append(f"{key}={value!r}: bytes are whole and not negative")
            elif key.endswith("_s"):  # seconds, or a rate per second (_per_s)
                if not all(x >= 0 for x in numbers):
                    problems.append(f"{key}={value!r}: seconds and rates are not negative")
            elif key not in UNITLESS:
                problems.append(f"{key}={value!r}: numeric key without a unit suffix (_s, _per_s, _bytes)")
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


def test_unitless_keys_are_written() -> None:
    """Every exception to the suffix rule is a key the JSON has (a stale exception hides nothing)."""
    keys = {line.split()[2] for line in KEYS_FILE.read_text().splitlines() if line and line[0] != "#"}
    assert sorted(UNITLESS - keys) == []
