"""Training: one optimizer step per round (forward with labels, backward, AdamW step, zero_grad)."""

import pytest

from pytest_tbench import TBench


@pytest.mark.tbench(mode="train")
def test_train(tbench: TBench) -> None:
    info = tbench.train()
    assert info["train_steps"] == info["rounds"] + info["warmup_rounds"]
