"""A run file is input from elsewhere (an artifact, a teammate's upload): one whose parts are of the wrong
type is refused with exit 2 and a message naming the file and the part, by every command that reads runs,
never with a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tbench.cli import main as tbench_main

GOOD_ITEM = {"fullname": "benches/t.py::test_forward[x]", "name": "test_forward[x]", "stats": {"median": 1.0}}
MALFORMED: dict[str, tuple[dict[str, Any], str]] = {
    "an entry that is no mapping": ({"benchmarks": ["oops"]}, "benchmarks[0] is a str"),
    "machine_info a string": ({"benchmarks": [GOOD_ITEM], "machine_info": "x"}, "'machine_info' is a str"),
    "tbench a list": ({"benchmarks": [GOOD_ITEM], "tbench": []}, "'tbench' is a list"),
    "stats a string": ({"benchmarks": [{**GOOD_ITEM, "stats": "x"}]}, "benchmarks[0].stats is a str"),
    "no fullname": ({"benchmarks": [{"name": "x", "stats": {}}]}, "benchmarks[0] has no item id"),
    "bad not_measured": (
        {"benchmarks": [], "tbench": {"not_measured": [{"x": 1}]}},
        "tbench.not_measured is not a list of entries",
    ),
    "bad shards": ({"benchmarks": [GOOD_ITEM], "tbench": {"shards": [{"nope": 1}]}}, "tbench.shards"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_run_is_refused_by_every_reader(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, said = MALFORMED[case]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    commands = [
        ["compare", str(path), str(path)],
        ["compare", str(path)],
        ["merge", str(path), str(other), "-o", str(tmp_path / "merged.json")],
        ["report", str(path), "--out", str(tmp_path / "report")],
    ]
    for command in commands:
        assert tbench_main(command) == 2, command
        err = capsys.readouterr().err
        assert str(path) in err and said in err, (command, err)
