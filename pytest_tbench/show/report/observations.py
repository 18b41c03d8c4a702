"""Plain-language observations, each computed from the numbers by one small function with its threshold.

A function says nothing when the data cannot support the claim: scaling needs at least two points on the
axis, a comparison needs the same item measured on both sides.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from statistics import geometric_mean, linear_regression, median

from pytest_tbench.core.axes import QUANT_NONE
from pytest_tbench.core.metric_table import COMPILE_TIME_S, LATENCY, PARAMETERS, PEAK_MEMORY, PREFILL, TOTAL
from pytest_tbench.core.modes import generates, throughput
from pytest_tbench.show.report.frame import Row
from pytest_tbench.show.report.metrics import group_by, points
from pytest_tbench.show.report.variants import (
    ATTN,
    COMPILE,
    QUANT,
    VariantRow,
    format_payback,
    speedup_of,
    variant_groups,
)

# From one batch size to the next, less than 10% more tokens/s counts as "not growing".
SATURATION_GAIN = 0.10
# latency ~ length^k: k below 0.2 is not growing (fixed costs hide the input), below 0.8 sub-linear, above
# 1.2 super-linear, between them roughly linear.
FLAT_BELOW = 0.2
SUBLINEAR_BELOW = 0.8
SUPERLINEAR_ABOVE = 1.2
# Less than 5% more peak memory per doubling of the batch counts as flat.
MEMORY_FLAT_PER_DOUBLING = 0.05
# Two runs whose median latencies differ by less than 5% are reported as about the same.
SAME_WITHIN = 0.05
# A variant is called faster or slower than another only when the medians differ by 5% or more.
VARIANT_DIFFERENCE = 0.05


def _where(row: Row, device: bool = True) -> str:
    new = f", {row.new_tokens} new tokens" if row.new_tokens else ""
    return f"{row.mode}, {row.device + ' ' if device else ''}{row.dtype}{new}"


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _lengths(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def throughput_saturation(rows: list[Row]) -> list[str]:
    """Where tokens/s stops growing with the batch: the first batch size after which no larger one gains
    SATURATION_GAIN over the one before it."""
    found = []
    for group_rows in group_by(rows, lambda r: r.group).values():
        first = group_rows[0]
        metric = throughput(first.mode)
        stalls: dict[int, tuple[int, list[tuple[int, float]]]] = {}
        for seq, seq_rows in sorted(group_by(group_rows, lambda r: r.seq_len or 0).items()):
            series = points(seq_rows, lambda r: r.batch_size, metric)
            if len(series) < 2 or any(v <= 0 for _, v in series):
                continue
            gains = [b / a - 1 for (_, a), (_, b) in itertools.pairwise(series)]
            start = len(gains)
            while start > 0 and gains[start - 1] < SATURATION_GAIN:
                start -= 1
            if start < len(gains):
                stalls[seq] = (series[start][0], series)
        if not stalls:
            continue
        stalled_at = {seq: batch for seq, (batch, _) in stalls.items()}
        by_batch = group_by(sorted(stalled_at), stalled_at.__getitem__)
        parts = [f"past batch {batch} at input {_lengths(seqs)}" for batch, seqs in sorted(by_batch.items())]
        seq = max(stalls)
        batch, series = stalls[seq]
        at = dict(series)
        top = series[-1][0]
        example = f"{_num(at[batch])} {metric.unit} at batch {batch}, {_num(at[top])} at batch {top}"
        found.append(
            f"Throughput of {first.model} stops growing {'; '.join(parts)} on {first.device} "
            f"({_where(first, device=False)}; less than {SATURATION_GAIN:.0%} more per larger batch; "
            f"input {seq}: {example})."
        )
    return found


def prefill_share(rows: list[Row]) -> list[str]:
    """How much of a generate request is prefill (TTFT), at the longest input (smallest batch there)."""
    found = []
    generate = [r for r in rows if generates(r.mode)]
    for group_rows in group_by(generate, lambda r: r.group).values():
        usable = [r for r in group_rows if PREFILL.value(r) is not None and (TOTAL.value(r) or 0) > 0]
        if not usable:
            continue
        longest = max(r.seq_len or 0 for r in usable)
        row = min((r for r in usable if (r.seq_len or 0) == longest), key=lambda r: r.batch_size or 0)
        ttft, total = PREFILL.value(row) or 0.0, TOTAL.value(row) or 1.0
        text = (
            f"Prefill is {ttft / total:.0%} of total latency at input {longest} for {row.model} "
            f"(batch {row.batch_size}, {_where(row)}): {_num(ttft, 1)} of {_num(total, 1)} ms"
        )
        shortest = [r for r in usable if r.batch_size == row.batch_size and (r.seq_len or 0) < longest]
        if shortest:
            low = min(shortest, key=lambda r: r.seq_len or 0)
            share = (PREFILL.value(low) or 0.0) / (TOTAL.value(low) or 1.0)
            text += f"; {share:.0%} at input {low.seq_len}"
        found.append(text + ".")
    return found


def _exponent(series: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(latency) against log(length)."""
    return linear_regression([math.log(x) for x, _ in series], [math.log(y) for _, y in series]).slope


def latency_vs_length(rows: list[Row]) -> list[str]:
    """How latency grows with the input length, at the smallest batch measured at two lengths or more."""
    found = []
    for group_rows in group_by(rows, lambda r: r.group).values():
        by_batch = group_by(group_rows, lambda r: r.batch_size or 0)
        for batch in sorted(by_batch):
            series = points(by_batch[batch], lambda r: r.seq_len, LATENCY)
            if len(series) >= 2 and all(v > 0 for _, v in series):
                break
        else:
            continue
        k = _exponent(series)
        growth = (
            "falls"
            if k <= -FLAT_BELOW
            else "barely changes"
            if k < FLAT_BELOW
            else "grows sub-linearly"
            if k < SUBLINEAR_BELOW
            else "grows super-linearly"
            if k > SUPERLINEAR_ABOVE
            else "grows roughly linearly"
        )
        (x0, y0), (x1, y1) = series[0], series[-1]
        first = group_rows[0]
        found.append(
            f"Latency of {first.model} {growth} with input length ({_where(first)}, batch {batch}): "
            f"x{y1 / y0:.1f} from {x0} to {x1} tokens (x{x1 / x0:g} the input; exponent {k:.2f})."
        )
    return found


def memory_vs_batch(rows: list[Row]) -> list[str]:
    """Peak memory growth per doubling of the batch, at the longest input measured at two batch sizes."""
    found = []
    for group_rows in group_by(rows, lambda r: r.group).values():
        by_seq = group_by(group_rows, lambda r: r.seq_len or 0)
        for seq in sorted(by_seq, reverse=True):
            series = points(by_seq[seq], lambda r: r.batch_size, PEAK_MEMORY)
            if len(series) >= 2 and series[0][1] > 0 and series[-1][0] > series[0][0]:
                break
        else:
            continue
        (b0, m0), (b1, m1) = series[0], series[-1]
        doublings = math.log2(b1 / b0)
        per_doubling = (m1 - m0) / doublings
        relative = (m1 / m0) ** (1 / doublings) - 1 if m1 > 0 else -1.0
        first = group_rows[0]
        span = f"{_num(m0, 1)} MiB at batch {b0}, {_num(m1, 1)} MiB at batch {b1}"
        if abs(relative) < MEMORY_FLAT_PER_DOUBLING:
            found.append(
                f"Peak memory of {first.model} barely changes with the batch ({_where(first)}, input {seq}): "
                f"{span} (under {MEMORY_FLAT_PER_DOUBLING:.0%} per doubling)."
            )
        else:
            verb = "grows" if per_doubling > 0 else "shrinks"
            found.append(
                f"Peak memory of {first.model} {verb} by {_num(abs(per_doubling), 1)} MiB per doubling "
                f"of the batch ({_where(first)}, input {seq}): {span}."
            )
    return found


def model_comparison(rows: list[Row]) -> list[str]:
    """The fastest and slowest model on the items every model of a run measured."""
    found = []
    for (run, mode), mode_rows in group_by(rows, lambda r: (r.run, r.mode)).items():
        latencies: dict[tuple[object, ...], dict[str, float]] = {}
        for row in mode_rows:
            value = LATENCY.value(row)
            if value is not None and value > 0:
                latencies.setdefault(row.item, {})[row.model] = value
        models = sorted({m for per_model in latencies.values() for m in per_model})
        common = [per_model for per_model in latencies.values() if len(per_model) == len(models)]
        if len(models) < 2 or not common:
            continue
        means = {m: geometric_mean([c[m] for c in common]) for m in models}
        fast, slow = min(models, key=means.__getitem__), max(models, key=means.__getitem__)
        ratios = [c[slow] / c[fast] for c in common]
        wins = sum(1 for c in common if min(c, key=c.__getitem__) == fast)
        every = "every" if wins == len(common) else f"{wins} of {len(common)}"
        plural = "s" if len(common) > 1 else ""
        found.append(
            f"On the {len(common)} {mode} item{plural} all {len(models)} models ran ({run}), {fast} is the "
            f"fastest overall and {slow} the slowest: {slow} takes x{median(ratios):.2f} {fast}'s median "
            f"latency (median over items; x{min(ratios):.2f} to x{max(ratios):.2f}); {fast} is the fastest "
            f"on {every} item{plural}."
        )
    return found


def run_comparison(rows: list[Row]) -> list[str]:
    """Each later run against the first on the items both measured, per mode and model."""
    run_labels = list(dict.fromkeys(r.run for r in rows))
    if len(run_labels) < 2:
        return []
    found = []
    base = {(r.mode, r.model, r.item): v for r in rows if r.run == run_labels[0] and (v := LATENCY.value(r))}
    for label in run_labels[1:]:
        ratios: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            value = LATENCY.value(row)
            before = base.get((row.mode, row.model, row.item))
            if row.run == label and value and before:
                ratios.setdefault((row.mode, row.model), []).append(value / before)
        for (mode, model), values in ratios.items():
            middle = median(values)
            verdict = (
                "about the same as"
                if abs(middle - 1) < SAME_WITHIN
                else "slower than"
                if middle > 1
                else "faster than"
            )
            found.append(
                f"{model} {mode} in {label} is {verdict} in {run_labels[0]}: median latency x{middle:.2f} "
                f"(median over {len(values)} common item{'s' if len(values) > 1 else ''}; "
                f"x{min(values):.2f} to x{max(values):.2f})."
            )
    return found


def _variant_where(row: Row, runs: bool, shown: str = "") -> str:
    """``gpt2 forward attn:eager at batch 8 x 512 on cuda bfloat16``: the item, with the variant axes
    ``shown`` (those the sentence does not compare)."""
    new = f" (+{row.new_tokens} new tokens)" if row.new_tokens else ""
    run = f" [{row.run}]" if runs else ""
    variant = f" {shown}" if shown else ""
    return (
        f"{row.model} {row.mode}{variant} at batch {row.batch_size} x {row.seq_len}{new} on {row.device} "
        f"{row.dtype}{run}"
    )


def _other_axes(row: Row, tag: str) -> str:
    """``row``'s variant label without the axis ``tag``."""
    return " ".join(part for part in row.variant.split() if part.partition(":")[0] != tag)


def _ms(entry: VariantRow | Row) -> str:
    row = entry.row if isinstance(entry, VariantRow) else entry
    return LATENCY.format(LATENCY.value(row))


def fastest_variant(rows: list[Row]) -> list[str]:
    """Per group measured under several variants, the fastest one against the item at every default when it
    beats it by VARIANT_DIFFERENCE or more; where no item at the defaults was measured, against the slowest
    variant (never against a stand-in for the defaults)."""
    runs = len({r.run for r in rows}) > 1
    found = []
    for group in variant_groups(rows):
        timed = [e for e in group if e.median_s is not None]
        if len(timed) < 2:
            continue
        best = min(timed, key=lambda e: e.median_s or 0.0)
        base = group[0].baseline
        where = _variant_where(best.row, runs)
        if base is not None:
            speedup = best.speedup
            if speedup is None or best.row is base or speedup < 1 + VARIANT_DIFFERENCE:
                continue
            found.append(
                f"{best.row.variant} is {speedup:.2f}x faster than the defaults for {where}: "
                f"{_ms(best)} vs {_ms(base)} ms median (the fastest of {len(timed)} variants)."
            )
            continue
        slow = max(timed, key=lambda e: e.median_s or 0.0)
        ratio = (slow.median_s or 0.0) / (best.median_s or 1.0)
        if ratio < 1 + VARIANT_DIFFERENCE:
            continue
        found.append(
            f"{best.row.variant} is the fastest of the {len(timed)} variants of {where}, {ratio:.2f}x faster "
            f"than the slowest, {slow.row.variant}: {_ms(best)} vs {_ms(slow)} ms median (no item at the "
            "defaults was measured)."
        )
    return found


def attention_comparison(rows: list[Row]) -> list[str]:
    """Per group and setting of the other axes measured under two attention implementations or more, the
    fastest against the slowest when it beats it by VARIANT_DIFFERENCE or more."""
    runs = len({r.run for r in rows}) > 1
    found = []
    for group in variant_groups(rows):
        by_others = group_by(group, lambda e: _other_axes(e.row, ATTN.tag))
        for others, entries in by_others.items():
            timed = [e for e in entries if e.median_s is not None]
            if len({e.values[ATTN.key] for e in timed}) < 2:
                continue
            best = min(timed, key=lambda e: e.median_s or 0.0)
            slow = max(timed, key=lambda e: e.median_s or 0.0)
            ratio = (slow.median_s or 0.0) / (best.median_s or 1.0)
            if ratio < 1 + VARIANT_DIFFERENCE:
                continue
            fast_name, slow_name = best.values[ATTN.key], slow.values[ATTN.key]
            of = f" of {len(timed)} attention implementations" if len(timed) > 2 else ""
            found.append(
                f"{fast_name} is {ratio:.2f}x faster than {slow_name}{of} for "
                f"{_variant_where(best.row, runs, others)}: {_ms(best)} vs {_ms(slow)} ms median."
            )
    return found


def compile_payback(rows: list[Row]) -> list[str]:
    """Per compiled variant, after how many calls its compile time is saved back against the same item
    uncompiled, when compiled is VARIANT_DIFFERENCE or more faster; that it never is, when as much slower."""
    runs = len({r.run for r in rows}) > 1
    found = []
    for group in variant_groups(rows):
        for entry in group:
            base, speedup, calls = entry.compile_base, entry.compile_speedup, entry.payback_calls
            if base is None or speedup is None or calls is None:
                continue
            mode = entry.values[COMPILE.key]
            seconds = entry.row.metric(COMPILE_TIME_S) or 0.0
            where = _variant_where(entry.row, runs, _other_axes(entry.row, COMPILE.tag))
            pays = f"pays back its {seconds:,.1f} s after {format_payback(calls)} calls"
            medians = f"{_ms(base)} ms per call uncompiled, {_ms(entry)} compiled"
            if speedup >= 1 + VARIANT_DIFFERENCE:
                found.append(f"compile ({mode}) {pays} for {where}: {medians} ({speedup:.2f}x faster).")
            elif speedup <= 1 / (1 + VARIANT_DIFFERENCE):
                found.append(
                    f"compile ({mode}) never pays back its {seconds:,.1f} s for {where}: compiled is "
                    f"{speedup:.2f}x (slower), {medians}."
                )
    return found


def quantization_tradeoff(rows: list[Row]) -> list[str]:
    """Per quantized variant, its speed and weight bytes against the same item unquantized (weight bytes only
    where both recorded them)."""
    runs = len({r.run for r in rows}) > 1
    found = []
    for group in variant_groups(rows):
        for entry in group:
            base = entry.bases.get(QUANT.key)
            ratio = speedup_of(base, entry.row)
            if base is None or ratio is None:
                continue
            verdict = (
                "about as fast as"
                if abs(ratio - 1) < VARIANT_DIFFERENCE
                else f"{ratio:.2f}x ({'faster' if ratio > 1 else 'slower'}) than"
            )
            quant = entry.values[QUANT.key]
            where = _variant_where(entry.row, runs, _other_axes(entry.row, QUANT.tag))
            text = f"{quant} is {verdict} {QUANT_NONE} for {where}: {_ms(entry)} vs {_ms(base)} ms median"
            weights, before = PARAMETERS.value(entry.row), PARAMETERS.value(base)
            if weights is not None and before:
                text += (
                    f", and holds {weights / before:.2f}x the weight bytes ({PARAMETERS.format(weights)} vs "
                    f"{PARAMETERS.format(before)} MiB)"
                )
            found.append(text + ".")
    return found


OBSERVERS: tuple[Callable[[list[Row]], list[str]], ...] = (
    throughput_saturation,
    prefill_share,
    latency_vs_length,
    memory_vs_batch,
    model_comparison,
    run_comparison,
    fastest_variant,
    attention_comparison,
    compile_payback,
    quantization_tradeoff,
)


def observations(rows: list[Row]) -> list[str]:
    return [sentence for observe in OBSERVERS for sentence in observe(rows)]
