"""Workers run the code under test: a conftest's patch of the model reaches isolated, several-process and both
A/B sides' workers, and the code each ran is fingerprinted, compared with the pytest process' and between the
sides. The patch sleeps, so that whether it ran shows in the timings whatever CI's noise.

Subprocess runs only: an in-process run would import the patching conftest into this process, and leave every
later test of it measuring a sleeping GPT-2."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from transformers import GPT2Config, GPT2Model
from transformers.models.gpt2 import modeling_gpt2

from pytest_tbench.launch.conftests import session_conftests
from pytest_tbench.models.code import FunctionCode, ModelCode, check_here, differences, fingerprint

from .conftest import run_json
from .forked import runpytest_forked

# In the suite's parallel part: the timings asserted are sleeps, which another test's load lengthens a little
# and never shortens (a patch that did not run leaves a forward of about 1 ms), and A/B verdicts come from
# rounds interleaved in one session, which share that load.

SLEEP_S = 0.02  # per MLP call; tiny-gpt2 has two, and its whole forward takes about a millisecond unpatched

PATCHING_CONFTEST = f"""
import time
from transformers.models.gpt2 import modeling_gpt2

original = modeling_gpt2.GPT2MLP.forward


def slow_forward(self, hidden_states):
    time.sleep({SLEEP_S})
    return original(self, hidden_states)


modeling_gpt2.GPT2MLP.forward = slow_forward
"""

BENCH = """
def test_forward(tbench):
    tbench.forward()
"""

ARGS = [
    "--tbench-models", "tiny-gpt2", "--tbench-batch-sizes", "1", "--tbench-seq-lens", "8",
    "--tbench-rounds", "3", "--tbench-warmup", "1", "-p", "no:cacheprovider",
]  # fmt: skip


def _median(data: dict[str, Any]) -> float:
    (entry,) = data["benchmarks"]
    return float(entry["stats"]["median"])


def _functions(info: dict[str, Any]) -> dict[str, Any]:
    return dict(info["model_code"]["functions"])


def test_a_conftest_patch_runs_in_every_worker_of_an_item(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PATCHING_CONFTEST)
    pytester.makepyfile(test_bench=BENCH)
    # Workers forked by the forkserver (--tbench-isolate takes the same path with one worker); an A/B side's
    # workers: test_git_ab_of_a_model_change_made_through_a_conftest_import, both sides. Each item's fixture
    # also checks its worker's code against the pytest process' (test_a_patch_made_in_the_test_body_...).
    result, data = run_json(pytester, *ARGS, "--tbench-processes", "2", subprocess=True)
    result.assert_outcomes(passed=1)
    info = data["benchmarks"][0]["extra_info"]
    # Two patched MLP calls a forward: both workers measured them (unpatched, a forward is ~1 ms). No upper
    # bound: under the parallel part's load, a worker's own OpenMP threads spinning after a call kept its
    # sleeps from waking on time (160 ms medians against 43 ms in-process, once in CI); what ran is checked
    # below, by its code.
    assert len(info["process_rounds"]) == 2
    assert min(data["benchmarks"][0]["stats"]["data"]) >= 2 * SLEEP_S, "the conftest's patch did not run"
    # The item says the code its workers ran: the conftest's patched forward.
    assert _functions(info)["GPT2MLP.forward"]["source"].startswith("conftest.py:")


def test_a_conftest_that_fails_in_the_worker_fails_the_item_with_its_traceback(
    pytester: pytest.Pytester,
) -> None:
    # Imports in the pytest process, fails in the forkserver that imports it again for the workers.
    pytester.makeconftest(
        "import os\n"
        "os.environ.setdefault('TBENCH_TEST_SESSION_PID', str(os.getpid()))\n"
        "if os.environ['TBENCH_TEST_SESSION_PID'] != str(os.getpid()):\n"
        "    raise RuntimeError('only in the pytest process')\n"
    )
    pytester.makepyfile(test_bench=BENCH)
    result = runpytest_forked(pytester, *ARGS, "--tbench-isolate")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*conftest.py could not be imported in the worker's process (RuntimeError)*",
         "*RuntimeError: only in the pytest process*"]
    )  # fmt: skip


def test_a_patch_made_in_the_test_body_fails_the_isolated_item_naming_the_function(
    pytester: pytest.Pytester,
) -> None:
    # The test's body runs in the pytest process only: its worker measures stock GPT-2, which is said.
    pytester.makepyfile(
        test_bench="from transformers.models.gpt2 import modeling_gpt2\n\n"
        "def test_forward(tbench):\n"
        "    modeling_gpt2.GPT2MLP.forward = lambda self, hidden_states: hidden_states\n"
        "    tbench.forward()\n"
    )
    result = runpytest_forked(pytester, *ARGS, "--tbench-isolate")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*the worker measured other model code than this session has:*",
         "*GPT2MLP.forward: test_bench.py:4 in this session, transformers/models/gpt2/modeling_gpt2.py:* in "
         "the worker*",
         "*make it at a conftest's module level*"]
    )  # fmt: skip


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


MYMODEL = """
import time
from transformers.models.gpt2 import modeling_gpt2

original = modeling_gpt2.GPT2MLP.forward


def forward(self, hidden_states):
    hidden_states = original(self, hidden_states)
    time.sleep({seconds})
    return hidden_states


modeling_gpt2.GPT2MLP.forward = forward
"""


def test_git_ab_of_a_model_change_made_through_a_conftest_import(pytester: pytest.Pytester) -> None:
    # The project's model code lives in mymodel.py, which its conftest imports; a later commit slows it.
    pytester.makepyfile(mymodel=MYMODEL.format(seconds="0.01"), test_bench=BENCH)
    pytester.makeconftest("import mymodel  # noqa: F401\n")
    subprocess.run(["git", "init", "-q", str(pytester.path)], check=True)
    _git(pytester.path, "add", ".")
    _git(pytester.path, "commit", "-qm", "fast")
    (pytester.path / "NOTES.md").write_text("no model code here\n")
    _git(pytester.path, "add", ".")
    _git(pytester.path, "commit", "-qm", "docs")
    base_commit = _git(pytester.path, "rev-parse", "HEAD")

    (pytester.path / "mymodel.py").write_text(
        MYMODEL.format(seconds="0.01").replace("time.sleep(0.01)", "time.sleep(0.01)\n    time.sleep(0.01)")
    )
    _git(pytester.path, "commit", "-qam", "slow")
    slow, data = run_json(pytester, *ARGS, "--tbench-ab-pairs", "3", "--tbench-ab", "HEAD~1", subprocess=True)
    slow.assert_outcomes(passed=1)  # the run fails as a whole, at its end
    assert slow.ret == pytest.ExitCode.TESTS_FAILED
    (entry,) = data["benchmarks"]
    (verdict,) = [v for v in entry["extra_info"]["ab"]["verdicts"] if v["criterion"].startswith("time:")]
    assert verdict["status"] == "REGRESSED" and verdict["change"] > 0.5  # 2 x 10 ms -> 2 x 20 ms, +~1 ms
    assert entry["extra_info"]["ab"]["model_code"]["functions"] == ["GPT2MLP.forward (mymodel.py)"]
    slow.stdout.fnmatch_lines(
        ["*tbench A/B RUN*",
         "*tiny-gpt2-b1-s8-cpu-float32*: REGRESSED",
         "*model code differs between sides: GPT2MLP.forward (mymodel.py); source files differ: mymodel.py*"]
    )  # fmt: skip
    base = entry["extra_info"]["ab"]["sides"]["base"]
    assert (base["revision"], base["commit"]) == ("HEAD~1", base_commit)
    # The base side's workers imported its conftest too: 2 x 10 ms a forward (stock GPT-2: about 1 ms).
    assert entry["extra_info"]["ab_base"]["median_s"] >= 0.02
    base_code = entry["extra_info"]["ab_base"]["model_code"]["functions"]["GPT2MLP.forward"]
    assert base_code["source"].startswith("mymodel.py:")
    assert "tbench-ab-base" not in _git(pytester.path, "worktree", "list")  # removed with the session


def test_fingerprint_names_a_replaced_forward_and_what_differs() -> None:
    model = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=10, n_positions=8))
    stock = fingerprint(model)
    assert stock.functions["GPT2MLP.forward"].source.startswith("transformers/models/gpt2/modeling_gpt2.py:")
    assert stock.classes["GPT2MLP"] == "transformers.models.gpt2.modeling_gpt2.GPT2MLP"
    assert check_here(stock) == []  # this process has the same classes

    original = modeling_gpt2.GPT2MLP.forward
    try:
        modeling_gpt2.GPT2MLP.forward = lambda self, hidden_states: hidden_states  # type: ignore[method-assign]
        (line,) = check_here(stock)
        assert line.startswith("GPT2MLP.forward: tests/test_worker_code.py:") or line.startswith(
            "GPT2MLP.forward: test_worker_code.py:"
        )
        assert line.endswith("in the worker") and "modeling_gpt2.py:" in line
        patched = fingerprint(model)
    finally:
        modeling_gpt2.GPT2MLP.forward = original  # type: ignore[method-assign]
    here = patched.functions["GPT2MLP.forward"].source.split(":")[0]  # this test file
    assert differences(stock, patched) == ([f"GPT2MLP.forward ({here})"], [])
    assert differences(stock, fingerprint(model)) == ([], [])  # moved nothing: identical again

    # A module only one side's model has is named with its side; a file both read, where its content differs.
    extra = FunctionCode("torch/nn/modules/linear.py:120", "d1")
    base = ModelCode({}, {}, {"mymodel.py": "old"})
    current = ModelCode({"Linear": "torch.nn.Linear"}, {"Linear.forward": extra}, {"mymodel.py": "new"})
    assert differences(base, current) == (
        ["Linear.forward (torch/nn/modules/linear.py, current side only)"],
        ["mymodel.py"],
    )


def test_a_method_replaced_at_import_counts_after_its_module_entry_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The `kernels` library replaces LlamaAttention.__init__ when modeling_llama is imported. An in-process
    # run (pytester) drops the modules it imported from sys.modules afterwards, while the package keeps the
    # module as an attribute: the class is still reached, and its replaced method must still be seen, or the
    # worker's fingerprint (which has it) reads as "absent in this session".
    original = modeling_gpt2.GPT2MLP.__init__

    def replaced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)

    forward = modeling_gpt2.GPT2MLP.forward

    @functools.wraps(forward)  # as `kernels` wraps the forward: the wrapper carries the class's own name
    def wrapped_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(modeling_gpt2.GPT2MLP, "__init__", replaced_init)
    monkeypatch.setattr(modeling_gpt2.GPT2MLP, "forward", wrapped_forward)
    model = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=10, n_positions=8))
    worker = fingerprint(model)
    assert "GPT2MLP.__init__" in worker.functions
    monkeypatch.delitem(sys.modules, modeling_gpt2.__name__)
    assert check_here(worker) == []


def test_session_conftests_are_the_conftest_modules_in_registration_order(tmp_path: Path) -> None:
    import types

    first, second = types.ModuleType("conftest"), types.ModuleType("pkg.conftest")
    first.__file__ = str(tmp_path / "conftest.py")
    second.__file__ = str(tmp_path / "pkg" / "conftest.py")
    other = types.ModuleType("plugin")
    other.__file__ = str(tmp_path / "plugin/hooks.py")
    found = session_conftests([("a", first), ("b", other), ("c", second), ("d", object())])
    assert [(c.name, Path(c.file)) for c in found] == [
        ("conftest", tmp_path / "conftest.py"),
        ("pkg.conftest", tmp_path / "pkg" / "conftest.py"),
    ]


def test_an_ab_side_imports_nothing_of_the_code_under_test_before_its_import_path_is_set(
    tmp_path: Path,
) -> None:
    # A base revision's worktree goes first on the side's import path: transformers (and the plugin's
    # launchers, which import it) must not be imported before, not even to read the conftests it is sent.
    import os
    import sys

    from pytest_tbench.launch.ab.side_process import Launch, SideProcess, plugin_home
    from pytest_tbench.launch.conftests import Conftest

    # The side's first import, right after its path is set: what was imported before it?
    (tmp_path / "probe.py").write_text(
        "import sys\n"
        "names = ('transformers', 'torch', 'pytest_tbench.launch.worker')\n"
        "early = sorted(name for name in names if name in sys.modules)\n"
        f"open({str(tmp_path / 'early.txt')!r}, 'w').write(','.join(early))\n"
    )
    (tmp_path / "conftest.py").write_text("")
    home = plugin_home()
    env = {**os.environ, "PYTHONPATH": str(home)}
    conftest = Conftest("conftest", str(tmp_path / "conftest.py"), str(tmp_path))
    side = SideProcess("probe side", Launch(sys.executable, env, [str(tmp_path)], [], ["probe"], (conftest,)))
    try:
        side.start()
    finally:
        side.close()
    assert (tmp_path / "early.txt").read_text() == ""


FORK_AFTER_CONFTEST = """
import os, signal, sys
import torch
from pytest_tbench.launch.conftests import Conftest, load

before = len(os.listdir("/proc/self/task"))
load([Conftest("conftest", os.path.join(sys.argv[1], "conftest.py"), sys.argv[1])])
threads = len(os.listdir("/proc/self/task")) - before
pid = os.fork()
if pid == 0:  # a worker: computes with the default threads, as a measured item does
    signal.alarm(60)
    torch.randn(512, 512) @ torch.randn(512, 512)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(threads, os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
"""


def test_a_conftest_that_computes_at_import_leaves_its_process_safe_to_fork(tmp_path: Path) -> None:
    """The forkserver and each A/B side's process import the session's conftests, then fork workers: a tensor
    made at import must not start an OpenMP thread pool there, or the forked worker waits forever on it."""
    made = "import torch\n\nWEIGHT = torch.zeros(768, 364) + torch.ones(768, 364)\n"
    (tmp_path / "conftest.py").write_text(made)
    found = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_CONFTEST, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert found.returncode == 0, found.stderr
    threads, child = found.stdout.split()
    assert (threads, child) == ("0", "0")  # no thread started in the parent; the worker finished (no SIGALRM)
