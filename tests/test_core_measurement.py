"""core/measurement.py: an item's figures from its rounds to its extra_info, added to, never changed."""

from __future__ import annotations

from pytest_tbench.core.measurement import Measurement


def test_a_measurement_is_added_to_never_changed_and_becomes_extra_info_once() -> None:
    import pickle

    measured = Measurement.of(("item", {"rounds": 3, "ab_base": {"rounds": 3}}), ("memory", {"peak": 10}))
    pooled = measured.add(("processes", {"rounds": 6, "processes": 2})).without("peak")
    assert dict(measured) == {"rounds": 3, "ab_base": {"rounds": 3}, "peak": 10}  # unchanged
    assert dict(pooled) == {"rounds": 6, "ab_base": {"rounds": 3}, "processes": 2}
    assert (pooled.source("rounds"), pooled.source("ab_base"), pooled.source("peak")) == (
        "processes",
        "item",
        None,
    )
    extra_info = pooled.extra_info()
    extra_info["ab_base"]["rounds"] = 99  # what is written is a copy, nested entries too
    assert pooled["ab_base"] == {"rounds": 3}
    assert pickle.loads(pickle.dumps(pooled)) == pooled  # it travels from a worker process
    assert Measurement.of(("item", {"samples_per_call": 2})).samples_per_call == 2
    assert Measurement().tokens_per_call == 0
