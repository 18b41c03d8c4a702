"""Text for --tbench-list-presets and --tbench-list-models."""

from __future__ import annotations

from tabulate import tabulate

from .axes import COMPILE_MODES
from .config import TBenchConfig
from .models.registry import BUILTIN_MODELS, DEFAULT_MODELS, known_names, resolve
from .modes import MODES, Mode
from .presets import PRESETS, rounds_for_mode


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
    from .models.attention import attention_choices  # asks the installed transformers

    return (
        "Variant axes, each over any preset (a non-default value shows in the item id): "
        f"--tbench-attn-implementation {', '.join(attention_choices())}; "
        f"--tbench-compile {', '.join(COMPILE_MODES)}."
    )


def list_models(config: TBenchConfig) -> str:
    rows = []
    for name in known_names(config.custom_models):
        resolved = resolve(name, config.custom_models)
        rows.append([name, resolved.kind, "yes" if name in config.models else ""])
    text = tabulate(rows, ["spec", "kind", "selected"])
    return (
        text
        + "\n\nAlso accepted: a local directory written by save_pretrained(), or a Hugging Face Hub id "
        + f"(from_pretrained). Built-in names ({len(BUILTIN_MODELS)}) shadow Hub ids of the same name."
    )
