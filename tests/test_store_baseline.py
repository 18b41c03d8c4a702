"""``--tbench-compare store:[BRANCH]``: the gate's baseline read from the history store (the newest runs of
this machine, of a branch), and ``tbench store export --last N`` that reads them for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_tbench.cli import main as tbench_main
from pytest_tbench.history.store import open_store
from tests.test_gate import GATE_BENCH, LOOSE, SWEEP
from tests.test_store import run

pytest.importorskip("sqlalchemy")


def _runs(url: str, *specs: tuple[int, str, str]) -> list[int]:
    """Store a synthetic run per (day, branch, host); their ids."""
    ids = []
    with open_store(url) as store:
        for day, branch, host in specs:
            data: dict[str, Any] = run(day, host=host)
            data["commit_info"]["branch"] = branch
            stored = store.write_run(data, "import:synthetic")
            assert stored is not None
            ids.append(stored)
    return ids


def test_export_last_writes_the_newest_matching_runs_oldest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    ids = _runs(url, (1, "main", "box"), (2, "main", "box"), (3, "main", "box"), (4, "feature", "box"))
    _runs(url, (5, "main", "other"))
    out = tmp_path / "runs"
    args = ["store", "export", "--store", url, "--out-dir", str(out)]
    assert tbench_main([*args, "--last", "2", "--branch", "main", "--machine", "box (Test CPU)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == [str(ids[1]), str(ids[2])]
    for line in lines:
        exported = json.loads(Path(line.split("\t")[0]).read_text())
        assert exported["commit_info"]["branch"] == "main" and len(exported["benchmarks"]) == 2
    # Globs; a branch left out matches every branch.
    assert tbench_main([*args, "--last", "9", "--machine", "box*"]) == 0
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == [str(i) for i in ids]
    assert tbench_main([*args, "--last", "1", "--branch", "release-*"]) == 2
    assert "no stored run in" in capsys.readouterr().err
    # One run goes to -o, several to --out-dir: mixing them is a usage error that says which is which.
    assert tbench_main(["store", "export", "--store", url]) == 2
    assert "give -o RUN.json (one run), or --last N --out-dir DIR" in capsys.readouterr().err
    assert tbench_main([*args, "--last", "2", "3"]) == 2
    assert "give RUN_ID -o RUN.json for one run instead" in capsys.readouterr().err


def test_the_gate_judges_against_this_machine_s_newest_stored_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TBENCH_STORE", raising=False)
    pytester.makepyfile(test_bench=GATE_BENCH)
    sweep = [*SWEEP, "--tbench-batch-sizes", "1"]
    # Nothing stored yet: a usage error naming the store and how to fill it.
    missing = pytester.runpytest(*sweep, "--tbench-compare", "store:")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*store:: the store .benchmarks/tbench.sqlite does not exist; write runs*"])

    store = str(pytester.path / "history.sqlite")
    first = pytester.runpytest(*sweep, "--tbench-store", store, "--benchmark-json", "base.json")
    first.assert_outcomes(passed=1)
    # A newer run of the same items from another machine: not this machine's baseline.
    elsewhere = json.loads((pytester.path / "base.json").read_text())
    elsewhere["machine_info"]["node"] = "elsewhere"
    elsewhere["datetime"] = "2099-01-01T00:00:00+00:00"
    (pytester.path / "elsewhere.json").write_text(json.dumps(elsewhere))
    assert tbench_main(["store", "import", str(pytester.path / "elsewhere.json"), "--store", store]) == 0

    monkeypatch.setenv("SLOW_1", "4")
    slowed = pytester.runpytest(*sweep, "--tbench-compare", "store:", "--tbench-store", store, *LOOSE, "-rf")
    slowed.assert_outcomes(failed=1)
    slowed.stdout.fnmatch_lines(
        [
            "*performance regression against baseline store run 1 (3 measurements, judged together):",
            "*time: baseline * ms, now * ms, +*% (threshold 50%, p=*): REGRESSED*",
        ]
    )
    # Any machine: the newest stored run, whatever measured it (its items are the same).
    anywhere = ["--tbench-compare", "store:", "--tbench-compare-any-machine", "--tbench-compare-retries", "0"]
    other = pytester.runpytest(*sweep, *anywhere, "--tbench-store", store, *LOOSE)
    other.stdout.fnmatch_lines(["*tbench REGRESSION GATE vs store run 2*"])
    # A branch no stored run is on: said, with this machine's label.
    branch = pytester.runpytest(*sweep, "--tbench-compare", "store:release-*", "--tbench-store", store)
    assert branch.ret == pytest.ExitCode.USAGE_ERROR
    branch.stderr.fnmatch_lines(["*store:release-*: tbench store export: no stored run in *(this machine: *"])


def test_the_store_password_is_in_no_child_s_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export runs in a child process: its argv (as any local user reads it in /proc/PID/cmdline) holds
    no part of the store URL, which reaches it through the environment; the failure is said masked."""
    import subprocess
    import time

    from pytest_tbench.core.errors import OptionError
    from pytest_tbench.judge import stored

    seen: list[bytes] = []

    def run_and_read_cmdline(command: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **{
            k: v for k, v in kwargs.items() if k not in ("capture_output", "text", "timeout")
        }) as child:  # fmt: skip
            cmdline = Path(f"/proc/{child.pid}/cmdline")
            while not cmdline.read_bytes() and child.poll() is None:  # empty until its exec completes
                time.sleep(0.001)
            seen.append(cmdline.read_bytes())  # the child is still importing: alive
            out, err = child.communicate(timeout=kwargs.get("timeout"))
        return subprocess.CompletedProcess(command, child.returncode, out, err)

    monkeypatch.setattr(stored.subprocess, "run", run_and_read_cmdline)
    url = "postgresql://bench:s3cr3t-pw@127.0.0.1:9/history"  # port 9 (discard): refused at once
    with pytest.raises(OptionError) as raised:
        stored.stored_baselines("store:main", url, 3, None, tmp_path)
    assert seen and b"export" in seen[0]
    assert b"s3cr3t-pw" not in seen[0] and b"postgresql" not in seen[0], seen[0]
    assert "s3cr3t-pw" not in str(raised.value)
