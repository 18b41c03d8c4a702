"""FLOPs of one call of an item, counted once in an untimed pass after its rounds.

The pass runs the call's work under ``torch.utils.flop_counter.FlopCounterMode``, which counts the FLOPs
of the matmul-like aten ops (mm, addmm, bmm, baddbmm, convolution, scaled-dot-product attention, forward and
backward) from their shapes: 2*m*n*k for an (m, k) @ (k, n) product. Elementwise work (softmax, norms,
activations, the optimizer's update) is not counted, as in the usual MFU definition (PaLM, appendix B), where
it is a vanishing share of a transformer's FLOPs. Attention is counted as torch's formulas count it: full
(non-causal) attention, and a backward that recomputes the scores as flash kernels do (five products per two
of the forward), a share of a percent or so of a train step at the lengths benchmarked here. flash-attn 2's
ops (transformers' flash_attention_2) are counted with the same formulas.

Compiled code (``torch.compile``, transformers' auto-compiled decode step with a static cache) is counted as
the eager code it replaces: dynamo does not run compiled frames while a dispatch mode is active (it runs
them eagerly, without recompiling: tests/test_limits.py checks both), and compiling fuses elementwise work
but leaves the matmuls' FLOPs as they are.

Where it cannot count (an op it cannot see through, such as a custom CUDA kernel, or a failure inside the
mode) the item falls back to the per-token estimate of Kaplan et al. (2020): 2 FLOPs per matmul parameter per
token for a forward pass, 6 for forward and backward, and says so (``flops_method``,
``flops_estimate_reason``).
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from pytest_tbench.core.metric_table import FLOPS_ESTIMATE_REASON, FLOPS_METHOD, FLOPS_PER_CALL
from pytest_tbench.models.quantization import tensor_bytes, tensor_elements

COUNTED = "counted"

Mark = Callable[[str], None]


def _cpu_sdpa_flops(
    query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return int(sdpa_flop_count(query, key, value))


def _cpu_sdpa_backward_flops(
    grad_out: Any, query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return int(sdpa_backward_flop_count(grad_out, query, key, value))


def _flash_layout(*tensors: Any) -> list[tuple[int, int, int, int]]:
    """flash-attn's (batch, seqlen, heads, head_dim) shapes in torch's sdpa order (batch, heads, seqlen,
    head_dim)."""
    return [(t.shape[0], t.shape[2], t.shape[1], t.shape[3]) for t in tensors]


def _lengths(cu_seqlens: Any) -> list[int]:
    """A varlen call's sequence lengths, from its cumulative offsets (an untimed pass: reading them may
    synchronise)."""
    return [end - start for start, end in itertools.pairwise(cu_seqlens.tolist())]


def _packed(tensor: Any, length: int) -> tuple[int, int, int, int]:
    """One sequence of a packed (total_tokens, heads, head_dim) tensor, in torch's sdpa order."""
    return (1, tensor.shape[1], length, tensor.shape[2])


def _flash_forward_flops(q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_flop_count(*_flash_layout(q, k, v)))


def _flash_backward_flops(dout: Any, q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
    return int(sdpa_backward_flop_count(*_flash_layout(dout, q, k, v)))


def _flash_varlen_forward_flops(q: Any, k: Any, v: Any, cu_q: Any, cu_k: Any, *_: Any, **__: Any) -> int:
    return sum(
        int(sdpa_flop_count(_packed(q, sq), _packed(k, sk), _packed(v, sk)))
        for sq, sk in zip(_lengths(cu_q), _lengths(cu_k), strict=True)
    )


def _flash_varlen_backward_flops(dout: Any, q: Any, k: Any, v: Any, *args: Any, **kwargs: Any) -> int:
    cu_q, cu_k = args[5], args[6]  # after out, softmax_lse, dq, dk, dv
    return sum(
        int(sdpa_backward_flop_count(_packed(dout, sq), _packed(q, sq), _packed(k, sk), _packed(v, sk)))
        for sq, sk in zip(_lengths(cu_q), _lengths(cu_k), strict=True)
    )


# flash-attn 2's ops (``flash_attn::...``, torch custom ops since flash-attn 2.6), which transformers'
# flash_attention_2 calls: torch's counter has no formula for them, so their attention would count as zero
# (20-30% of a 7B forward's FLOPs at 4-8k tokens). Counted as torch counts sdpa: full attention, whatever the
# causal flag, so that flash_attention_2 and sdpa items of one model report the same FLOPs. The formulas read
# the tensors themselves (``_get_raw``): a varlen call's sequence lengths are in its offsets' values.
_FLASH_FORMULAS: dict[str, Callable[..., int]] = {
    "_flash_attn_forward": _flash_forward_flops,
    "_flash_attn_backward": _flash_backward_flops,
    "_flash_attn_varlen_forward": _flash_varlen_forward_flops,
    "_flash_attn_varlen_backward": _flash_varlen_backward_flops,
}
for _formula in _FLASH_FORMULAS.values():
    _formula._get_raw = True  # type: ignore[attr-defined]


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas torch's counter lacks: on CPU, scaled-dot-product attention runs as
    ``_scaled_dot_product_flash_attention_for_cpu``, which torch's table does not list (its CUDA kernels are
    listed), so attention on CPU would count as zero; and flash-attn's ops, where flash-attn is installed."""
    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    cpu_sdpa: dict[str, Callable[..., int]] = {
        "_scaled_dot_product_flash_attention_for_cpu": _cpu_sdpa_flops,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _cpu_sdpa_backward_flops,
    }
    # Looked up at each count: flash-attn registers its ops when it is imported.
    for namespace, table in ((aten, cpu_sdpa), (torch.ops.flash_attn, _FLASH_FORMULAS)):
        for name, formula in table.items():
            op = getattr(namespace, name, None)
            if op is not None:
                formulas[op] = formula
    return formulas


@dataclass(frozen=True)
class FlopEstimate:
    """The per-token estimate: ``per_token_factor`` (2: forward, 6: forward and backward) FLOPs per matmul
    parameter per token through the model."""

    per_token_factor: int
    matmul_parameters: int
    tokens: int

    @property
    def flops(self) -> int:
        return self.per_token_factor * self.matmul_parameters * self.tokens

    @property
    def method(self) -> str:
        return f"estimate_{self.per_token_factor}n"


@dataclass(frozen=True)
class FlopPass:
    """How an item's FLOPs are found: ``run`` does one call's work (without the rounds' bookkeeping, so that
    running it outside the rounds changes nothing they report), calling ``mark(phase)`` at the end of each
    phase of the call it can tell apart (generate: after prefill, after each decode step); ``estimate``
    stands in where counting fails."""

    run: Callable[[Mark], object]
    estimate: FlopEstimate


PHASE_FLOPS = "_flops"  # the suffix of a marked phase's count in extra_info: "prefill_flops"


def is_flop_pass_key(key: str) -> bool:
    """Whether ``key`` is one the FLOP pass writes (``FlopCount.extra_info``)."""
    return key in (FLOPS_PER_CALL, FLOPS_METHOD, FLOPS_ESTIMATE_REASON) or key.endswith(PHASE_FLOPS)


@dataclass(frozen=True)
class FlopCount:
    flops: int
    method: str  # "counted", or the estimate's method
    phases: dict[str, int] = field(default_factory=dict)  # counted FLOPs per marked phase
    estimate_reason: str | None = None  # why the estimate stands in

    def extra_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {FLOPS_PER_CALL: self.flops, FLOPS_METHOD: self.method}
        info.update({f"{phase}{PHASE_FLOPS}": flops for phase, flops in self.phases.items()})
        if self.estimate_reason is not None:
            info[FLOPS_ESTIMATE_REASON] = self.estimate_reason
        return info


def count_flops(flop_pass: FlopPass, uncountable: str | None = None) -> FlopCount:
    """One untimed run of ``flop_pass`` under the FLOP counter; the estimate where counting fails or sees
    nothing, or where ``uncountable`` says why the counter would see only part of the work."""
    if uncountable is not None:
        return _estimated(flop_pass.estimate, uncountable)
    phases: dict[str, int] = {}
    marked = 0
    try:
        with (
            warnings.catch_warnings(),
            FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter,
        ):
            # The counter's module hooks are global; calling a torch.compile'd module warns that they fire
            # for its wrapper too, which changes only the per-module table, not the total read here.
            warnings.filterwarnings(
                "ignore", re.escape("Using `torch.compile(module)` when there are global hooks")
            )

            def mark(phase: str) -> None:
                nonlocal marked
                total = counter.get_total_flops()
                phases[phase] = phases.get(phase, 0) + total - marked
                marked = total

            flop_pass.run(mark)
        total = int(counter.get_total_flops())
    except Exception as exc:  # an op the mode cannot run (custom kernels, some compiled graphs): estimate
        return _estimated(flop_pass.estimate, f"FlopCounterMode failed: {type(exc).__name__}: {exc}")
    if total <= 0:
        return _estimated(
            flop_pass.estimate,
            "FlopCounterMode saw no matmul FLOPs (the model's matmuls run in kernels it cannot see)",
        )
    return FlopCount(total, COUNTED, {phase: int(flops) for phase, flops in phases.items()})


def _estimated(estimate: FlopEstimate, reason: str) -> FlopCount:
    return FlopCount(estimate.flops, estimate.method, estimate_reason=reason)


@dataclass(frozen=True)
class MatmulParameters:
    """The parameters a forward pass multiplies with: their number and bytes."""

    count: int
    bytes: int


def matmul_parameters(model: torch.nn.Module) -> MatmulParameters:
    """Every parameter but those of embedding tables, which a forward pass looks up (one row per token, no
    FLOPs, a row's bytes read) rather than multiplies with; a table the output projection shares (a tied LM
    head) is multiplied with whole and counts. Norm weights and biases count too: a rounding error here."""
    getter = getattr(model, "get_output_embeddings", None)  # a transformers model's; a bare module has none
    output = getter() if callable(getter) else None
    shared = {id(p) for p in output.parameters()} if isinstance(output, torch.nn.Module) else set()
    looked_up = {
        id(p)
        for module in model.modules()
        if isinstance(module, torch.nn.Embedding)
        for p in module.parameters(recurse=False)
    } - shared
    params = [p for p in model.parameters() if id(p) not in looked_up]  # parameters() gives a tied one once
    return MatmulParameters(sum(tensor_elements(p) for p in params), sum(tensor_bytes(p) for p in params))
