"""The session's conftest modules, imported again in the processes that fork workers, so that a worker runs
the code under test: a patch a conftest makes (``apply_liger_kernel_to_llama()``, a block swapped in, a
module of the project it imports) is in every worker, as it is in the pytest process.

A worker is a fresh process and runs only what it imports: the forkserver of ``--tbench-isolate`` and
``--tbench-processes``, each A/B side process and each tensor-parallel rank import torch, transformers and the
models' code, and, with this module, every conftest.py that pytest imported, in pytest's order and under the
module names pytest gave them, with the import path entry pytest put first for each (its import modes
prepend and append; under importlib mode the file is loaded by location alike). Importing happens once, in
the process that forks (the forkserver is told them through TBENCH_CONFTESTS while it starts, and imports them
from ``preload_conftests``; an A/B side process in its start message); every worker then checks, before it
builds its model, that the import succeeded
(``ensure``), so that a conftest that cannot be imported there fails the item with its traceback.

What runs in a worker is module-level code only: a conftest's fixtures, hooks and the test function's body run
in the pytest process alone. The model code fingerprint (``models/code.py``) then checks that the worker's
model runs the same functions as the pytest process' classes.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

ENVIRONMENT = "TBENCH_CONFTESTS"


@dataclass(frozen=True)
class Conftest:
    """One conftest module as pytest imported it."""

    name: str  # its module name ("conftest", or "benches.conftest" inside a package)
    file: str
    root: str | None  # the import path entry pytest put first for it (prepend/append modes), else None

    def moved(self, move: Callable[[str], str | None]) -> Conftest | None:
        """The same conftest in another tree (a base revision's worktree); None where that tree lacks it."""
        file = move(self.file) or self.file
        if not os.path.isfile(file):
            return None
        root = (move(self.root) or self.root) if self.root is not None else None
        return Conftest(self.name, file, root)


class ConftestImportError(RuntimeError):
    """A conftest of the session failed to import in a worker's process; the message has its traceback."""


def session_conftests(plugins: Iterable[tuple[str, Any]]) -> tuple[Conftest, ...]:
    """The conftest modules among ``plugins`` (pytest's ``pluginmanager.list_name_plugin()``, in the order
    they were registered, which is the order pytest imported them)."""
    found = []
    for _, plugin in plugins:
        file = getattr(plugin, "__file__", None)
        if not isinstance(plugin, types.ModuleType) or not file or os.path.basename(file) != "conftest.py":
            continue
        name = plugin.__name__
        root = os.path.dirname(os.path.abspath(file))
        for _ in range(name.count(".")):  # a package's conftest: its top package's parent is the entry
            root = os.path.dirname(root)
        on_path = {os.path.abspath(entry or os.curdir) for entry in sys.path}
        found.append(Conftest(name, os.path.abspath(file), root if root in on_path else None))
    return tuple(found)


# In a process that forks workers: what it imported, and the first failure's text.
_loaded: tuple[Conftest, ...] | None = None
_failure: str | None = None


def load(conftests: Iterable[Conftest]) -> None:
    """Import ``conftests`` in order; a failure is remembered for the workers (``ensure``), never raised here:
    the process serves other items, and a worker says what failed."""
    global _loaded, _failure
    _loaded, _failure = tuple(conftests), None
    for conftest in _loaded:
        try:
            with _one_thread():
                _import(conftest)
        except (Exception, SystemExit, pytest_outcome()) as exc:
            what = type(exc).__name__
            _failure = (
                f"{conftest.file} could not be imported in the worker's process ({what}); workers import "
                f"every conftest.py of the session, so that they run the code under test:\n"
                f"{traceback.format_exc()}"
            )
            return


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch's intra-op threads at one while a conftest is imported. The processes that import them fork the
    workers (the forkserver, each A/B side's process), and a fork must find no OpenMP thread pool in its
    parent: the child would wait forever on threads it does not have (a conftest that made a 768 x 364
    tensor at import hung every worker of its side). With one thread no pool is started; the count is put
    back for the workers, which start their own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ensure(conftests: Iterable[Conftest]) -> None:
    """In a worker, before its model is built: the session's conftests are imported (where the parent did
    not: a spawned rank, a forkserver started for other conftests), or ConftestImportError says why not."""
    wanted = tuple(conftests)
    if _loaded != wanted:
        load(wanted)
    if _failure is not None:
        raise ConftestImportError(_failure)


@contextlib.contextmanager
def exported(conftests: Iterable[Conftest]) -> Iterator[None]:
    """TBENCH_CONFTESTS set while a forkserver may start (``load_from_environment`` reads them), and
    removed after, so that no other child of the pytest process (a nested pytest) imports them."""
    previous = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = json.dumps([asdict(c) for c in conftests])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous


def pytest_outcome() -> type[BaseException]:
    """pytest.skip / exit / fail at a conftest's module level raise this BaseException subclass (pytest is
    imported only where a conftest already imported it)."""
    outcomes = sys.modules.get("_pytest.outcomes")
    return outcomes.OutcomeException if outcomes is not None else Exception  # type: ignore[no-any-return]


def _import(conftest: Conftest) -> None:
    """As pytest imports a conftest: its root first on the import path, its package imported, then the file
    executed under its module name (replacing a module of that name from another file, as pytest does for
    the several rootless "conftest" modules of a session)."""
    existing = sys.modules.get(conftest.name)
    if existing is not None and _same_file(getattr(existing, "__file__", None), conftest.file):
        return
    if conftest.root is not None and conftest.root not in sys.path:
        sys.path.insert(0, conftest.root)
    package = conftest.name.rpartition(".")[0]
    if package:
        importlib.import_module(package)
    spec = importlib.util.spec_from_file_location(conftest.name, conftest.file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {conftest.file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[conftest.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(conftest.name, None)
        raise


def _same_file(a: str | None, b: str) -> bool:
    return a is not None and os.path.abspath(a) == os.path.abspath(b)


def load_from_environment() -> None:
    """In a forkserver: import the conftests it was started with (``exported``); run by the last module of
    its preload list (``preload_conftests``), once the plugin's own modules are whole: a conftest may import
    them (``register_mode`` does), and would find them half-imported from here."""
    text = os.environ.get(ENVIRONMENT)
    if text:
        load(Conftest(**entry) for entry in json.loads(text))
