"""A process that imports what every pytest session of the suite imports (torch, transformers, the plugin's
dependencies) once, then forks one pytest session per request: a pytester "subprocess" run in a fraction of a
second instead of the ~7 s this 2-core machine takes to start a pytest that loads the plugin (the suite starts
about twenty of them). ``tests/forked.py`` drives it; run as ``python tests/zygote.py``.

Protocol, one JSON line each way: a job {"cwd", "argv", "env", "path", "stdout", "stderr"} in; the child's
{"pid"} out as soon as it is forked (the caller may kill it on a timeout), then {"rc"} when it has ended. The
zygote itself starts no thread (nothing here computes), so a fork of it is as safe as a fresh process.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys


def preload() -> None:
    """Import the plugin (and so torch, transformers, scipy...), then forget the plugin's own modules: a
    session imports them again, as pytest's plugin loading expects (a module imported before pytest starts
    cannot have its asserts rewritten), while the libraries they import stay loaded."""
    import pytest  # noqa: F401
    import pytest_benchmark.plugin  # noqa: F401
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: F401

    import pytest_tbench.plugin.hooks  # noqa: F401

    for name in [name for name in sys.modules if name.split(".")[0] == "pytest_tbench"]:
        del sys.modules[name]
    # Other pytest plugins the libraries imported (anyio, through httpx): pytest would warn in every session
    # that it cannot rewrite their asserts; their own docstring marker says not to try.
    for entry_point in importlib.metadata.entry_points(group="pytest11"):
        module = sys.modules.get(entry_point.value.split(":")[0].split(".")[0])
        if module is not None:
            module.__doc__ = f"{module.__doc__ or ''}\nPYTEST_DONT_REWRITE"


def child(job: dict[str, object]) -> None:
    """The forked session: the job's directory, environment, import path and output files, then pytest's
    console entry point as ``python -m pytest`` runs it. Never returns."""
    code = 1
    try:
        os.chdir(str(job["cwd"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(job["env"]).items()})  # type: ignore[call-overload]
        sys.path[:0] = [str(entry) for entry in job["path"]]  # type: ignore[attr-defined]
        sys.argv = [str(arg) for arg in job["argv"]]  # type: ignore[attr-defined]
        stdin = os.open(os.devnull, os.O_RDONLY)
        os.dup2(stdin, 0)
        for fd, key in ((1, "stdout"), (2, "stderr")):
            target = os.open(str(job[key]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        import pytest

        code = int(pytest.console_main())
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    del sys.path[0]  # this script's folder (tests/): a session's import path is its own
    preload()
    reply = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=reply, flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        reply.flush()
        pid = os.fork()
        if pid == 0:
            child(job)
        print(json.dumps({"pid": pid}), file=reply, flush=True)
        _, status = os.waitpid(pid, 0)  # blocks: a waiting parent must not poll
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=reply, flush=True)


if __name__ == "__main__":
    main()
