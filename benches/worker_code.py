"""Do workers run the code under test? The two cases of issue #18, re-run end to end in throwaway projects.

1. A conftest patches ``GPT2MLP.forward`` to sleep 5 ms first (standing in for a kernel patch): the same
   item (tiny-gpt2, b1 x s16, 10 rounds) in-process, with ``--tbench-isolate``, ``--tbench-processes 2``, on
   both sides of ``--tbench-ab env:X=1``. Every median should be the patched one (2 MLP calls x 5 ms).
2. A user project in git: ``mymodel.py``, imported by the conftest, patches GPT-2's MLP and registers
   ``mygpt`` (GPT-2 with 6 layers); a second commit gives the MLP an extra projection (intermediate -> hidden,
   added to c_proj's output). ``--tbench-ab HEAD~1`` over 4 items (b1/b2 x s32/s64) should say REGRESSED on
   every item and name GPT2MLP.forward; an A/A (``--tbench-ab HEAD``) should say identical model code.

    python benches/worker_code.py [--case 1|2|both] [--pairs 8]

Prints the medians, verdicts and the model-code lines; each session's output is kept in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PATCH = """
import time
from transformers.models.gpt2 import modeling_gpt2

original = modeling_gpt2.GPT2MLP.forward


def slow_forward(self, hidden_states):
    time.sleep(0.005)
    return original(self, hidden_states)


modeling_gpt2.GPT2MLP.forward = slow_forward
"""

BENCH = "def test_forward(tbench):\n    tbench.forward()\n"

# The project's model code at its first revision; the second (EXTRA) edits the MLP as a developer would: an
# extra projection (intermediate -> hidden) built in __init__ and added to c_proj's output in forward.
MYMODEL = """
from torch import nn
from transformers import GPT2Config
from transformers.models.gpt2 import modeling_gpt2

from pytest_tbench import register_model

_init = modeling_gpt2.GPT2MLP.__init__


def __init__(self, intermediate_size, config):
    _init(self, intermediate_size, config)


def forward(self, hidden_states):
    hidden = self.act(self.c_fc(hidden_states))
    return self.dropout(self.c_proj(hidden))


modeling_gpt2.GPT2MLP.__init__ = __init__
modeling_gpt2.GPT2MLP.forward = forward
register_model("mygpt", GPT2Config(n_layer=6))
"""
EXTRA = (
    ("    _init(self, intermediate_size, config)\n",
     "    _init(self, intermediate_size, config)\n"
     "    self.extra = nn.Linear(intermediate_size, config.hidden_size)\n"),
    ("    return self.dropout(self.c_proj(hidden))\n",
     "    return self.dropout(self.c_proj(hidden) + self.extra(hidden))\n"),
)  # fmt: skip


def with_extra_projection(source: str) -> str:
    for old, new in EXTRA:
        assert old in source
        source = source.replace(old, new)
    return source


def _pytest(project: Path, name: str, *args: str) -> tuple[int, str, dict[str, Any]]:
    out = project / f"{name}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, f"--benchmark-json={out}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    (project / f"{name}.log").write_text(done.stdout + done.stderr)
    print(f"  [{name}: exit {done.returncode}, {time.perf_counter() - start:.0f} s]", flush=True)
    data = json.loads(out.read_text()) if out.exists() else {"benchmarks": []}
    return done.returncode, done.stdout, data


def _code_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "model code" in line]


def case_patched_conftest(root: Path, pairs: int) -> None:
    project = root / "patched"
    project.mkdir()
    (project / "conftest.py").write_text(PATCH)
    (project / "test_bench.py").write_text(BENCH)
    item = ["--tbench-models", "tiny-gpt2", "--tbench-batch-sizes", "1", "--tbench-seq-lens", "16"]
    item += ["--tbench-rounds", "10"]
    launchers = {
        "in-process": [],
        "--tbench-isolate": ["--tbench-isolate"],
        "--tbench-processes 2": ["--tbench-processes", "2"],
        "--tbench-ab env:X=1": ["--tbench-ab", "env:X=1", "--tbench-ab-pairs", str(pairs)],
    }
    print("case 1: a conftest patches GPT2MLP.forward (+5 ms a call, 2 calls a forward)")
    rows = []
    for label, extra in launchers.items():
        _, _, data = _pytest(project, label.split()[0].strip("-"), *item, *extra)
        (entry,) = data["benchmarks"]
        rows.append((label, entry["stats"]["median"], entry["extra_info"]))
    reference = rows[0][1]
    print(f"  {'launcher':24} {'median':>10} {'vs in-process':>14}  GPT2MLP.forward ran from")
    for label, median, info in rows:
        source = info["model_code"]["functions"]["GPT2MLP.forward"]["source"]
        print(f"  {label:24} {median * 1e3:8.2f} ms {median / reference - 1:+13.1%}  {source}")
        if "ab_base" in info:
            base = info["ab_base"]["median_s"]
            print(f"  {'  (its base side)':24} {base * 1e3:8.2f} ms {base / reference - 1:+13.1%}")


def case_git_revisions(root: Path, pairs: int) -> None:
    project = root / "project"
    (project / "benches").mkdir(parents=True)
    (project / "mymodel.py").write_text(MYMODEL)
    (project / "benches" / "conftest.py").write_text("import mymodel  # noqa: F401\n")
    (project / "benches" / "test_bench.py").write_text(BENCH)
    (project / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    git = ["git", "-C", str(project), "-c", "user.email=b@b", "-c", "user.name=b"]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "mygpt"], check=True)
    (project / "mymodel.py").write_text(with_extra_projection(MYMODEL))
    subprocess.run([*git, "commit", "-qam", "an extra projection in the MLP"], check=True)
    sweep = ["benches/", "--tbench-models", "mygpt", "--tbench-batch-sizes", "1,2"]
    sweep += ["--tbench-seq-lens", "32,64", "--tbench-ab-pairs", str(pairs)]
    print(f"case 2: a git A/B of two revisions of the project's model code ({pairs} pairs, 4 items)")
    for name, revision in (("aa", "HEAD"), ("ab", "HEAD~1")):
        code, stdout, data = _pytest(project, name, *sweep, "--tbench-ab", revision)
        print(f"  --tbench-ab {revision}: exit {code}")
        for entry in data["benchmarks"]:
            for verdict in entry["extra_info"]["ab"]["verdicts"]:
                if verdict["criterion"].startswith("time:"):
                    low, high = verdict.get("low"), verdict.get("high")
                    interval = f" [{low:+.1%}, {high:+.1%}]" if low is not None else ""
                    print(f"    {entry['name']:48} {verdict['change']:+7.1%}{interval} {verdict['status']}")
        for line in _code_lines(stdout):
            print(f"    {line}")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--case", choices=["1", "2", "both"], default="both")
    parser.add_argument("--pairs", type=int, default=8, help="--tbench-ab-pairs (default 8, the plugin's)")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tbench-worker-code-"))
    print(f"sessions' output in {root}")
    if options.case in ("1", "both"):
        case_patched_conftest(root, options.pairs)
    if options.case in ("2", "both"):
        case_git_revisions(root, options.pairs)


if __name__ == "__main__":
    main()
