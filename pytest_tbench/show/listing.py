"""Text for --tbench-list-presets and --tbench-list-models."""

from __future__ import annotations

from tabulate import tabulate

from pytest_tbench.core.axes import COMPILE_MODES, QUANT_NONE
from pytest_tbench.core.modes import MODES, Mode
from pytest_tbench.models.registry import BUILTIN_MODELS, DEFAULT_MODELS, ResolvedSpec, known_names, resolve
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.presets import PRESETS, rounds_for_mode


def _span(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values)) if len(values) <= 4 else f"{values[0]} ... {values[-1]} (powers of 2)"


def _rounds_note(modes: dict[str, Mode]) -> str:
    """How each mode's rounds follow from runs, modes of the same factor together."""
    by_factor: dict[int, list[str]] = {}
    for mode in modes.values():
        by_factor.setdefault(mode.rounds_per_run, []).append(mode.name)
    return "rounds = " + ", ".join(
        f"runs x {factor} ({', '.join(names)})" for factor, names in by_factor.items()
    )


def list_presets() -> str:
    # One rounds column per mode in the table as it is now, so that modes a conftest.py registered show too.
    modes = dict(MODES)
    rows = [
        [
            p.name,
            _span(p.batch_sizes),
            _span(p.seq_lens),
            p.new_tokens,
            p.runs,
            *(rounds_for_mode(p.runs, mode) for mode in modes),
            p.description,
        ]
        for p in PRESETS.values()
    ]
    headers = [
        "preset",
        "batch sizes",
        "input lengths",
        "output length",
        "runs",
        *(f"{mode} rounds" for mode in modes),
        "",
    ]
    return (
        tabulate(rows, headers)
        + f"\n\n{_rounds_note(modes)}; --tbench-rounds overrides."
        + f"\nDefault models: {', '.join(DEFAULT_MODELS)}"
        + f"\n{_variant_note()}"
    )


def _variant_note() -> str:
    """The variant axes every preset can be swept over, with the values this installation offers."""
    from pytest_tbench.models.attention import attention_choices  # asks the installed transformers

    return (
        "Variant axes, each over any preset (a non-default value shows in the item id): "
        f"--tbench-attn-implementation {', '.join(attention_choices())}; "
        f"--tbench-compile {', '.join(COMPILE_MODES)}."
    )


def _size(parameters: int) -> str:
    if parameters >= 1e9:
        return f"{parameters / 1e9:.2f}B"
    return f"{parameters / 1e6:.1f}M" if parameters >= 1e6 else f"{parameters / 1e3:.1f}K"


def _memory(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def _weights_row(spec: ResolvedSpec) -> list[str]:
    """Architecture, parameters and approximate weight memory per dtype, from the config on the meta device
    (models/fit.py): nothing is allocated, so the 7B shapes list as fast as the tiny ones."""
    import torch
    from transformers import AutoModel

    from pytest_tbench.models.families import family_of
    from pytest_tbench.models.fit import weights
    from pytest_tbench.models.loading import head_class, head_unsupported_reason

    try:
        config = spec.load_config()
    except Exception as exc:  # a Hub id offline, a broken user config: say so in the row, list the rest
        return [f"config unavailable: {type(exc).__name__}", "", "", "", "", ""]
    # The architecture's LM head model where it has one (its published parameter count), else the base model.
    lm_head = head_unsupported_reason(spec.spec, "lm", config) is None
    model_class = head_class("lm", config) if lm_head else AutoModel
    sizes = [weights(model_class, config, dtype, QUANT_NONE) for dtype in (torch.float32, torch.bfloat16)]
    int8 = weights(model_class, config, torch.bfloat16, "int8-weight-only")
    family = family_of(config).name
    return [
        family,
        str(config.model_type),
        _size(sizes[0][0]),
        *(_memory(size) for _, size in (*sizes, int8)),
    ]


def list_models(config: TBenchConfig) -> str:
    rows = []
    for name in known_names(config.sweep.custom_models):
        resolved = resolve(name, config.sweep.custom_models)
        rows.append(
            [name, resolved.kind, *_weights_row(resolved), "yes" if name in config.sweep.models else ""]
        )
    headers = [
        "spec",
        "kind",
        "family",
        "architecture",
        "parameters",
        "float32",
        "16-bit",
        "int8",
        "selected",
    ]
    text = tabulate(rows, headers, disable_numparse=True)
    return (
        text
        + "\n\nWeight memory per dtype of the architecture's LM head model where it has one (else the base "
        + "model), counted on the meta device; int8: torchao's weight-only scheme on the linear layers "
        + "(--tbench-quantization)."
        + "\nAlso accepted: a local directory written by save_pretrained(), or a Hugging Face Hub id "
        + f"(from_pretrained). Built-in names ({len(BUILTIN_MODELS)}) shadow Hub ids of the same name."
    )
