"""A fingerprint of the code a loaded model runs: for each module class in it, its ``forward`` and any method
replaced on it, as the function's source place and a digest of its code, plus a digest of each source file
they come from. Torch-free (it reads ``model.modules()`` only).

Why: a worker is a fresh process and runs only what it imports. A patch made from a conftest (a fused kernel
swapped in, a block replaced) that a worker misses makes it measure other code than the pytest process would,
with nothing to show for it but a number. The fingerprint is taken where the model runs (every launcher's
extra_info ``model_code``) and compared with the pytest process' own classes (``check_here``) and, under
``--tbench-ab``, between the two sides (``differences``).

A function's digest covers its bytecode, names and constants, not its line numbers or file name, so that the
same function moved within a file (or read from another checkout) is the same code; a change of a helper it
calls shows in its file's digest instead. Decorators made with ``functools.wraps`` are followed: every
function of the chain is digested, and a wrapper from another file is named beside the wrapped function.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MODEL_CODE = "model_code"  # extra_info key
FORWARD = "forward"


@dataclass(frozen=True)
class FunctionCode:
    source: str  # where it is defined, e.g. "transformers/models/gpt2/modeling_gpt2.py:291"
    digest: str

    def as_json(self) -> dict[str, str]:
        return {"source": self.source, "digest": self.digest}


@dataclass(frozen=True)
class ModelCode:
    """``classes``: each module class of the model by its short name, as the import path it came from;
    ``functions``: "Class.method" -> its code; ``files``: the source file of each function -> its digest."""

    classes: Mapping[str, str]
    functions: Mapping[str, FunctionCode]
    files: Mapping[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "classes": dict(self.classes),
            "functions": {name: code.as_json() for name, code in self.functions.items()},
            "files": dict(self.files),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelCode:
        functions = {
            name: FunctionCode(str(code["source"]), str(code["digest"]))
            for name, code in (data.get("functions") or {}).items()
        }
        return cls(dict(data.get("classes") or {}), functions, dict(data.get("files") or {}))


def fingerprint(model: Any) -> ModelCode:
    """The code ``model`` (a torch module) runs: every module class in it, once; of a model that is no torch
    module (another runtime's), its own class."""
    classes: dict[str, type] = {}
    instance_forwards: dict[str, Any] = {}
    modules = model.modules() if hasattr(model, "modules") else [model]
    for module in modules:
        cls = type(module)
        name = _class_key(cls, classes)
        classes.setdefault(name, cls)
        # A forward set on the instance (accelerate's hooks, a hand patch of one layer) is what runs.
        own = getattr(module, "__dict__", {}).get(FORWARD)
        if own is not None and name not in instance_forwards:
            instance_forwards[name] = own
    return _fingerprint(classes, instance_forwards)


def fingerprint_classes(paths: Mapping[str, str]) -> tuple[ModelCode, list[str]]:
    """The code of the classes ``paths`` names (short name -> import path) as this process has them, and the
    short names of those whose module this process never imported (nothing here can have changed them, so
    they are not compared). A class a module now holds under another name (a patch that replaced the class)
    is fingerprinted as the class it now is."""
    classes: dict[str, type] = {}
    unknown = []
    for name, path in paths.items():
        found = _resolve(path)
        if found is None:
            unknown.append(name)
        else:
            classes[name] = found
    return _fingerprint(classes, {}), unknown


def check_here(worker: ModelCode, where: str = "the worker") -> list[str]:
    """How the code ``worker`` ran differs from this process' classes of the same names: one line per
    function, e.g. "GPT2MLP.forward: conftest.py:5 in this session,
    transformers/models/gpt2/modeling_gpt2.py:291 in the worker"; empty when they match."""
    here, unknown = fingerprint_classes(worker.classes)
    lines = []
    for name, path in worker.classes.items():
        if name not in unknown and here.classes.get(name) != path:
            lines.append(f"{name}: {here.classes.get(name)} in this session, {path} in {where}")
    for name, code in worker.functions.items():
        if name.split(".")[0] in unknown or name.endswith("@instance"):
            continue  # instance patches are made by the model's own loading (accelerate), not by imports
        mine = here.functions.get(name)
        if mine is None:
            lines.append(f"{name}: absent in this session, {code.source} in {where}")
        elif mine.digest != code.digest:
            lines.append(f"{name}: {mine.source} in this session, {code.source} in {where}")
    for name, code in here.functions.items():
        if name not in worker.functions:
            lines.append(f"{name}: {code.source} in this session, absent in {where}")
    return lines


def differences(base: ModelCode, current: ModelCode) -> tuple[list[str], list[str]]:
    """What differs between two sides' model code: the functions (e.g. "GPT2MLP.forward (mymodel.py)", or
    "Linear.forward (torch/nn/modules/linear.py, current side only)" for a module only one side's model has)
    and, apart, the source files both sides read whose content differs (a helper a forward calls, a
    comment)."""
    functions = []
    for name in sorted(set(base.functions) | set(current.functions)):
        before, after = base.functions.get(name), current.functions.get(name)
        if before is not None and after is not None:
            if before.digest != after.digest:
                functions.append(f"{name} ({after.source.split(':', 1)[0]})")
            continue
        side, code = ("current", after) if after is not None else ("base", before)
        assert code is not None  # the name came from one of the two sides
        functions.append(f"{name} ({code.source.split(':', 1)[0]}, {side} side only)")
    shared = set(base.files) & set(current.files)
    files = sorted(path for path in shared if base.files[path] != current.files[path])
    return functions, files


def _class_key(cls: type, taken: Mapping[str, type]) -> str:
    """A class's short name, or its import path where two classes of the model share the short name."""
    name = cls.__qualname__
    return name if taken.get(name, cls) is cls else f"{cls.__module__}.{cls.__qualname__}"


def _resolve(path: str) -> type | None:
    """The class at import path ``path`` in this process, only where its module is already imported."""
    for split in range(1, path.count(".") + 1):  # the longest module name first
        module_name, attributes = path.rsplit(".", split)[0], path.split(".")[-split:]
        module = sys.modules.get(module_name)
        if module is None:
            continue
        found: Any = module
        for attribute in attributes:
            found = getattr(found, attribute, None)
        return found if isinstance(found, type) else None
    return None


def _fingerprint(classes: Mapping[str, type], instance_forwards: Mapping[str, Any]) -> ModelCode:
    functions: dict[str, FunctionCode] = {}
    files: dict[str, str] = {}
    for name, cls in classes.items():
        for method, function in _measured_methods(cls):
            functions[f"{name}.{method}"] = _function_code(function, files)
        if name in instance_forwards:
            functions[f"{name}.{FORWARD}@instance"] = _function_code(instance_forwards[name], files)
    paths = {name: f"{cls.__module__}.{cls.__qualname__}" for name, cls in classes.items()}
    return ModelCode(paths, functions, files)


def _measured_methods(cls: type) -> Iterable[tuple[str, Any]]:
    """``forward`` (wherever in the class's bases it is defined), and every function of the class's own whose
    code lives in another file than the class (a method replaced on it)."""
    forward = getattr(cls, FORWARD, None)
    if forward is not None:
        yield FORWARD, forward
    home = _home_file(cls)
    for method, value in vars(cls).items():
        if method == FORWARD or not isinstance(value, types.FunctionType):
            continue
        inner = _chain(value)[-1]  # a decorator's wrapper (torch.no_grad) lives elsewhere: look through it
        if home is not None and inner.__code__.co_filename != home:
            yield method, value


def _home_file(cls: type) -> str | None:
    """The file that defines ``cls``: its module's, or, where that module is gone from ``sys.modules`` (a
    class reached through its package's attribute after the module entry was dropped), the file of a function
    written in the class's own body."""
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if path is not None:
        return str(path)
    for value in vars(cls).values():
        if not isinstance(value, types.FunctionType):
            continue
        inner = _chain(value)[-1]  # a wrapper's copied name is not where its code is: look through it
        if inner.__qualname__.startswith(f"{cls.__qualname__}."):
            return inner.__code__.co_filename
    return None


def _chain(function: Any) -> list[types.FunctionType]:
    """The plain functions behind a callable: through bound methods, partials and ``functools.wraps``
    wrappers, outermost first."""
    found: list[types.FunctionType] = []
    seen: set[int] = set()
    current = function
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, types.MethodType):
            current = current.__func__
            continue
        if isinstance(current, functools.partial):
            current = current.func
            continue
        if isinstance(current, types.FunctionType):
            found.append(current)
        current = getattr(current, "__wrapped__", None)
    return found


def _function_code(function: Any, files: dict[str, str]) -> FunctionCode:
    chain = _chain(function)
    if not chain:
        kind = type(function)
        return FunctionCode(f"<{kind.__module__}.{kind.__qualname__}>", "")
    digest = hashlib.blake2b(digest_size=8)
    for member in chain:
        _feed(digest, member.__code__)
        path = display_path(member.__code__.co_filename)
        if path not in files:
            files[path] = file_digest(member.__code__.co_filename)
    inner = chain[-1].__code__
    source = f"{display_path(inner.co_filename)}:{inner.co_firstlineno}"
    outer = chain[0].__code__
    if outer.co_filename != inner.co_filename:
        source += f" wrapped in {display_path(outer.co_filename)}:{outer.co_firstlineno}"
    return FunctionCode(source, digest.hexdigest())


def _feed(digest: Any, code: types.CodeType) -> None:
    """What a function does, not where it stands: bytecode, names, constants (nested functions alike)."""
    digest.update(code.co_code)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        digest.update(repr(names).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            _feed(digest, constant)
        elif isinstance(constant, frozenset):  # a set's order follows the hash seed, which differs by process
            digest.update(repr(sorted(map(repr, constant))).encode())
        else:
            digest.update(repr(constant).encode())


@functools.cache
def file_digest(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()[:16]
    except OSError:
        return ""


def display_path(path: str) -> str:
    """``path`` relative to the import path entry it was found under (the longest that holds it): the same
    module reads alike in a worktree and in the repository, e.g. ``transformers/models/gpt2/modeling_gpt2.py``
    or ``mymodel.py``."""
    full = os.path.abspath(path)
    best = ""
    for entry in sys.path:
        root = os.path.abspath(entry or os.curdir)
        if full.startswith(root + os.sep) and len(root) > len(best):
            best = root
    return os.path.relpath(full, best) if best else os.path.basename(full)
