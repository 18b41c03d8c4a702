"""Generation: time to first token, per-token decode latency, total latency and tokens/s, over the sweep.

Encoder-only models in the sweep are skipped with a reason; decoder-only and encoder-decoder models run.
"""

import pytest

from pytest_tbench import TBench


@pytest.mark.tbench(mode="generate")
def test_generate(tbench: TBench) -> None:
    info = tbench.generate()
    assert info["ttft_mean_s"] + info["decode_time_mean_s"] == pytest.approx(info["total_time_mean_s"])
