"""The A/B settings, parsed from ``--tbench-ab``, ``--tbench-ab-pairs`` and ``--tbench-ab-undecided``;
torch-free. A side is the current code, or a base that differs from it by a git revision, another Python
interpreter and/or environment variables; the pairs per item are N, or MIN:MAX for a sequential design
(judge/sequential.py spends them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_tbench.core.errors import OptionError

# Splits ``env:A=1,B=x,y`` before each ``NAME=`` only, so that a value may hold commas
# (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True,garbage_collection_threshold:0.6).
_ENV_SPLIT = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names whose values are secrets (HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...): the base
# side gets them, but the JSON, the store, the reports and the terminal show "***" (the name alone says what
# differed).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|PRIVATE|COOKIE|SESSION", re.IGNORECASE)
MASK = "***"

SPEC_HELP = (
    "REV (a git revision of the repository under test, e.g. origin/main), python:PATH (another interpreter "
    "or venv's python), env:KEY=VALUE[,KEY=VALUE] (environment variables); combine them with spaces, "
    "e.g. 'origin/main env:OMP_NUM_THREADS=1'"
)


@dataclass(frozen=True)
class Side:
    """The base side: what differs from the current code. Empty fields are the same as the current side."""

    revision: str | None = None
    python: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def shown_env(self) -> dict[str, str]:
        """The variables as results may record them: a secret-like name's value masked."""
        return {name: MASK if _SECRET_NAME.search(name) else value for name, value in self.env.items()}

    @property
    def label(self) -> str:
        """As it was given, e.g. ``origin/main env:OMP_NUM_THREADS=1``, secret values masked."""
        parts = [self.revision] if self.revision else []
        if self.python:
            parts.append(f"python:{self.python}")
        if self.env:
            parts.append("env:" + ",".join(f"{k}={v}" for k, v in self.shown_env.items()))
        return " ".join(parts)

    def __str__(self) -> str:
        return self.label


def parse_side(value: Any) -> Side:
    """``--tbench-ab`` (given once or several times; each value one or more space-separated parts)."""
    texts = [value] if isinstance(value, str) else [str(v) for v in value]
    parts = [part for text in texts for part in text.split()]
    if not parts:
        raise OptionError(f"no base side given; use {SPEC_HELP}")
    revision: str | None = None
    python: str | None = None
    env: dict[str, str] = {}
    for part in parts:
        if part.startswith("python:"):
            if python is not None:
                raise OptionError(f"two interpreters for the base side ({python!r}, {part!r}); give one")
            python = part.removeprefix("python:")
            if not python:
                raise OptionError(f"{part!r} names no interpreter; use python:/path/to/venv/bin/python")
        elif part.startswith("env:"):
            env.update(_parse_env(part))
        else:
            rev = part.removeprefix("git:")
            if revision is not None:
                raise OptionError(f"two revisions for the base side ({revision!r}, {rev!r}); give one")
            if not rev or rev.startswith("-"):
                raise OptionError(f"{part!r} is not a git revision; use {SPEC_HELP}")
            revision = rev
    return Side(revision, python, env)


def _parse_env(part: str) -> dict[str, str]:
    body = part.removeprefix("env:")
    env = {}
    for assignment in _ENV_SPLIT.split(body) if body else []:
        name, equals, value = assignment.partition("=")
        if not equals or not _ENV_NAME.match(name):
            raise OptionError(
                f"bad environment setting {assignment!r} in {part!r}; use env:KEY=VALUE[,KEY=VALUE]"
            )
        env[name] = value
    if not env:
        raise OptionError(f"{part!r} sets no variable; use env:KEY=VALUE[,KEY=VALUE]")
    return env


FIRST_LOOK_SHARE = 0.25  # of an item's error, spent at the first look (judge/sequential.py says why)


@dataclass(frozen=True)
class PairBudget:
    """Pairs per item: ``first`` for every item, up to ``most`` for one the first look leaves undecided."""

    first: int
    most: int

    @property
    def sequential(self) -> bool:
        return self.most > self.first

    def share(self, look: int) -> float:
        """The share of the item's error spent at look 0 (the first) or 1 (the last)."""
        if not self.sequential:
            return 1.0
        return FIRST_LOOK_SHARE if look == 0 else 1.0 - FIRST_LOOK_SHARE

    def __str__(self) -> str:
        return f"{self.first}:{self.most}" if self.sequential else str(self.first)


DEFAULT_PAIRS = PairBudget(8, 8)


def parse_pairs(value: Any) -> PairBudget:
    """``N`` (every item N pairs) or ``MIN:MAX``."""
    text = str(value).strip()
    first, _, most = text.partition(":")
    try:
        budget = PairBudget(int(first), int(most or first))
    except ValueError:
        raise OptionError(f"{value!r} is not N or MIN:MAX (pairs per item, e.g. 8 or 4:12)") from None
    if budget.first < MIN_PAIRS or budget.most < budget.first:
        raise OptionError(
            f"{value!r}: pairs per item need MIN >= {MIN_PAIRS} and MAX >= MIN (e.g. 8, or 4:12 to give "
            "undecided items up to 12)"
        )
    return budget


UNDECIDED_MODES = ("pass", "warn", "fail")


MIN_PAIRS = 2  # a spread between pairs needs two
