"""An item's case id (``tiny-gpt2-b1-s8-cpu-float32``), spelled in one place for the pytest item ids
(``cases.BenchCase.id``) and for the history store, which reads cases back from saved runs. Torch-free."""

from __future__ import annotations

from pytest_tbench.core.axes import variant_id
from pytest_tbench.core.record import Case


def case_id(case: Case, label: str) -> str:
    """The id of ``case`` whose model is named ``label`` (its spec, or a local directory's last part)."""
    new = f"-n{case.new_tokens}" if case.new_tokens else ""
    # A family without a token axis has seq_len 0 and names its input alone (-img224, -audio30s).
    length = f"-s{case.seq_len}" if case.seq_len or not case.media else ""
    media = f"-{case.media}" if case.media else ""
    variant = variant_id(vars(case))
    return f"{label}-b{case.batch_size}{length}{media}{new}-{case.device}-{case.dtype}{variant}"
