"""Pairs spent where they decide something (``--tbench-ab-pairs MIN:MAX``): every item is measured by MIN
pairs and judged (the first look); an item the first look leaves undecided (cannot tell, too few samples)
gets more pairs, up to MAX, and is judged on all of them (the second and last look). Decided items stop at
the first.

Looking twice lets an unchanged item fail at either look, so the item's share of the run's error is spent
across the looks: a share FIRST_LOOK_SHARE at the first, the rest at the second (alpha spending in its
simplest form, Bonferroni over the looks). The p-value the run's procedure takes (run_verdict.py) is
min over the looks made of p_k / share_k, which is valid whatever the looks' correlation:
P(min <= t) <= share_1 t + share_2 t = t. An item judged at the first look only still takes p_1 / share_1,
since the design would have looked again. The first look spends little (a quarter): on few pairs it decides
the clear cases, a large change whose p-value is tiny anyway or a tight "unchanged" that needs none; the
last look, on the most pairs, gets the rest (O'Brien-Fleming's idea without its boundaries). Boundaries that
use the looks' correlation (Pocock's, O'Brien-Fleming's) would cost less; this rule needs no computation
and holds regardless. A fixed design (MIN = MAX) has one look and spends everything there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pytest_tbench.judge.judge import MIN_RUN_ITEMS, REGRESSED, TOO_FEW
from pytest_tbench.judge.paired import CANNOT_TELL, PairedVerdict
from pytest_tbench.judge.run_verdict import ALPHA
from pytest_tbench.settings.ab import PairBudget

UNDECIDED = (CANNOT_TELL, TOO_FEW)


def undecided(verdicts: Sequence[PairedVerdict], share: float = 1.0, tests: int = 1) -> bool:
    """Whether more pairs could decide something: a verdict that cannot tell, or a regression that the run's
    procedure might not confirm. The run holds ``tests`` tests (run_verdict.py's Benjamini-Hochberg), which
    confirms a test whose p-value is at most ALPHA / tests whatever the others' are; a regression whose p,
    spent at this look's ``share``, is above that could end as "cannot tell" among the run's tests, so it
    gets the pairs that may confirm it (a gpt2 item at +7% [+2.4%, +11.7%] on 4 pairs, p = 0.0014, stopped
    as "cannot tell" under a rule that only asked p / share <= ALPHA: 2026-12-07, a 4-item sweep)."""
    bound = ALPHA / max(1, tests)
    for verdict in verdicts:
        if verdict.status in UNDECIDED:
            return True
        if verdict.status == REGRESSED and (verdict.p_value is None or verdict.p_value / share > bound):
            return True
    return False


def run_tests(items: int, verdicts: Sequence[PairedVerdict]) -> int:
    """The tests a run of ``items`` items like this one holds: each item's distinct tests, and the run's own
    where it has one (run_verdict.py)."""
    own = max(1, items) * max(1, len({verdict.test for verdict in verdicts}))
    return own + 1 if items >= MIN_RUN_ITEMS else own


def first_look(budget: PairBudget, verdicts: Sequence[PairedVerdict], tests: int = 1) -> dict[str, Any]:
    """The first look as the JSON keeps it (``ab.looks[0]``): its pairs, its share, each test's p-value and
    the run's tests it expected (``undecided``)."""
    p_values = {v.test: v.p_value for v in verdicts if v.p_value is not None}
    return {"pairs": budget.first, "share": budget.share(0), "p_values": p_values, "run_tests": tests}


def last_look(budget: PairBudget, pairs: int) -> dict[str, Any]:
    return {"pairs": pairs, "share": budget.share(1)}


def spent(
    verdicts: Sequence[PairedVerdict], looks: Sequence[Mapping[str, Any]] | None
) -> list[PairedVerdict]:
    """``verdicts`` (judged on every pair measured) with each p-value spent over the looks made: the smallest
    p_k / share_k, the last look's p being the verdict's own. No looks (a run before this rule): unchanged."""
    if not looks:
        return list(verdicts)
    earlier, last = looks[:-1], looks[-1]
    result = []
    for verdict in verdicts:
        if verdict.p_value is None:
            result.append(verdict)
            continue
        candidates = [verdict.p_value / float(last.get("share") or 1.0)]
        for look in earlier:
            p = (look.get("p_values") or {}).get(verdict.test)
            if p is not None:
                candidates.append(float(p) / float(look["share"]))
        result.append(replace(verdict, p_value=min(1.0, min(candidates))))
    return result
