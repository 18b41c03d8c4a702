"""Inference latency, throughput and peak memory of one forward pass, over the tbench sweep."""

from pytest_tbench import TBench


def test_forward(tbench: TBench) -> None:
    info = tbench.forward()
    assert info["peak_memory_bytes"] > 0
