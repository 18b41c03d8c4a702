"""The report's variant comparison (table, CSV, plot, observations) on a crafted run whose medians the tests
choose. No torch, no model."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from pytest_tbench.cli import main as tbench_main
from pytest_tbench.core.axes import variant_id
from pytest_tbench.show.report import run_of
from pytest_tbench.show.report.observations import (
    attention_comparison,
    compile_payback,
    fastest_variant,
    observations,
    quantization_tradeoff,
)
from pytest_tbench.show.report.variants import format_payback, variant_groups, variant_table

MIB = 1024 * 1024


def item(batch: int, median: float, extra: dict[str, Any] | None = None, **variant: str) -> dict[str, Any]:
    """A forward item of model alpha at ``batch`` x 32 on cpu float32, with its variant axes as given."""
    case: dict[str, Any] = {
        "mode": "forward",
        "model": "alpha",
        "head": "base",
        "batch_size": batch,
        "seq_len": 32,
        "device": "cpu",
        "dtype": "float32",
        "new_tokens": 0,
        **variant,
    }
    name = f"test_forward[alpha-b{batch}-s32-cpu-float32{variant_id(variant)}]"
    info = {
        "median_s": median,
        "throughput_tokens_per_s": batch * 32 / median,
        "peak_memory_bytes": 500 * MIB,
        "parameter_bytes": 100 * MIB,
        **(extra or {}),
    }
    return {
        "name": name,
        "fullname": f"benches/test_forward.py::{name}",
        "params": {"tbench_case": case},
        "stats": {"min": median, "max": median, "mean": median, "median": median, "rounds": 3},
        "extra_info": info,
    }


# Batch 1: every kind of variant against the defaults (10 ms).
DEFAULTS_S = 0.010
COMPILED_S, COMPILE_TIME_S = 0.008, 2.0  # compiled: faster, pays back after 2.0 / 0.002 = 1,000 calls
EAGER_S = 0.0125
EAGER_COMPILED_S = 0.015  # compiled eager: slower than eager uncompiled, never pays back
QUANT_S = 0.0125  # int8-dynamic: 0.8x, with 31 of 100 MiB of weights
# Batch 2: eager and sdpa only, no item at the defaults.
B2_EAGER_S, B2_SDPA_S = 0.014, 0.010
# Batch 8: sdpa within 5% of the defaults: no claim either way.
B8_DEFAULTS_S, B8_SDPA_S = 0.020, 0.0195


def crafted() -> dict[str, Any]:
    benchmarks = [
        item(1, DEFAULTS_S, {"achieved_tflops": 0.5}),
        item(1, COMPILED_S, {"compile_time_s": COMPILE_TIME_S}, compile="default"),
        item(1, EAGER_S, attn_implementation="eager"),
        item(1, EAGER_COMPILED_S, {"compile_time_s": 3.0}, attn_implementation="eager", compile="default"),
        item(1, QUANT_S, {"parameter_bytes": 31 * MIB}, quantization="int8-dynamic"),
        item(2, B2_EAGER_S, attn_implementation="eager"),
        item(2, B2_SDPA_S, attn_implementation="sdpa"),
        item(4, 0.02),  # one variant only: no rows
        item(8, B8_DEFAULTS_S),
        item(8, B8_SDPA_S, attn_implementation="sdpa"),
    ]
    return {"machine_info": {"tbench": {}}, "benchmarks": benchmarks, "datetime": "2026-01-01T00:00:00"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("variants")
    run = folder / "variants.json"
    run.write_text(json.dumps(crafted()), encoding="utf-8")
    out = folder / "report"
    assert tbench_main(["report", str(run), "--out", str(out)]) == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def rows() -> list[Any]:
    return run_of(crafted(), "variants").rows


def test_groups_hold_the_items_measured_under_several_variants() -> None:
    groups = variant_groups(rows())
    assert [(g[0].row.batch_size, [e.row.variant for e in g]) for g in groups] == [
        (
            1,
            ["", "compile:default", "quant:int8-dynamic", "attn:eager", "attn:eager compile:default"],
        ),
        (2, ["attn:eager", "attn:sdpa"]),
        (8, ["", "attn:sdpa"]),
    ]  # batch 4 had one variant: no group


def test_speedups_and_payback_arithmetic() -> None:
    first, second, _ = variant_groups(rows())
    entries = {e.row.variant: e for e in first}
    assert entries[""].speedup == 1.0
    assert entries["compile:default"].speedup == DEFAULTS_S / COMPILED_S
    assert entries["attn:eager"].speedup == DEFAULTS_S / EAGER_S
    # A compiled variant is compared with the same item uncompiled: the defaults, or eager uncompiled.
    compiled = entries["compile:default"]
    assert compiled.compile_base is entries[""].row
    assert compiled.compile_speedup == DEFAULTS_S / COMPILED_S
    assert compiled.payback_calls == COMPILE_TIME_S / (DEFAULTS_S - COMPILED_S)
    eager_compiled = entries["attn:eager compile:default"]
    assert eager_compiled.compile_base is entries["attn:eager"].row
    assert eager_compiled.payback_calls == math.inf
    assert entries["attn:eager"].payback_calls is None  # not compiled
    # No item at the defaults: no speedups, and none invented.
    assert all(e.baseline is None and e.speedup is None for e in second)


@pytest.mark.parametrize(
    ("calls", "shown"),
    [(3650.947, "~3,650"), (3952.5, "~3,950"), (999.9999, "1,000"), (12.2, "13"), (math.inf, "never")],
)
def test_payback_shows_three_digits_of_the_calls_needed(calls: float, shown: str) -> None:
    assert format_payback(calls) == shown


def test_the_table_has_a_row_per_variant_and_says_what_lacks_a_baseline() -> None:
    table = variant_table("forward", variant_groups(rows()), runs=False)
    assert table.headers[:4] == ["item", "attn", "quant", "compile"]
    assert "speedup vs defaults (x)" in table.headers and "throughput (tokens/s)" in table.headers
    # Present on some items only: shown; absent from all (MFU): no column.
    assert "achieved (TFLOP/s)" in table.headers and "MFU (%)" not in table.headers
    assert "compile pays back after (calls)" in table.headers
    cells = {(c[0], c[1], c[2], c[3]): dict(zip(table.headers, c, strict=True)) for c in table.cells}
    assert len(cells) == 9
    b1 = "alpha batch 1 x input 32 (cpu float32)"
    compiled = cells[(b1, "auto", "none", "default")]
    assert compiled["median latency (ms)"] == "8.00" and compiled["speedup vs defaults (x)"] == "1.25"
    assert compiled["compile time (s)"] == "2.0" and compiled["compile pays back after (calls)"] == "1,000"
    assert compiled["speedup vs uncompiled (x)"] == "1.25"
    assert cells[(b1, "eager", "none", "default")]["compile pays back after (calls)"] == "never"
    uncompiled = cells[(b1, "eager", "none", "off")]
    assert uncompiled["compile pays back after (calls)"] == uncompiled["compile time (s)"] == "-"
    b2 = cells[("alpha batch 2 x input 32 (cpu float32)", "eager", "none", "off")]
    assert b2["speedup vs defaults (x)"] == "n/a"
    assert "No item at the defaults was measured for alpha batch 2 x input 32 (cpu float32)" in table.note
    assert "batch 1" not in table.note.split("No item")[1]
    assert "compile_time_s / (that uncompiled median - the compiled median)" in table.note


def test_observations_say_what_the_numbers_support() -> None:
    data = rows()
    assert fastest_variant(data) == [
        "compile:default is 1.25x faster than the defaults for alpha forward at batch 1 x 32 on cpu float32: "
        "8.00 vs 10.00 ms median (the fastest of 5 variants).",
        "attn:sdpa is the fastest of the 2 variants of alpha forward at batch 2 x 32 on cpu float32, 1.40x "
        "faster than the slowest, attn:eager: 10.00 vs 14.00 ms median (no item at the defaults was "
        "measured).",
    ]  # batch 8: sdpa within 5% of the defaults, nothing said
    assert compile_payback(data) == [
        "compile (default) pays back its 2.0 s after 1,000 calls for alpha forward at batch 1 x 32 on cpu "
        "float32: 10.00 ms per call uncompiled, 8.00 compiled (1.25x faster).",
        "compile (default) never pays back its 3.0 s for alpha forward attn:eager at batch 1 x 32 on cpu "
        "float32: compiled is 0.83x (slower), 12.50 ms per call uncompiled, 15.00 compiled.",
    ]
    assert quantization_tradeoff(data) == [
        "int8-dynamic is 0.80x (slower) than none for alpha forward at batch 1 x 32 on cpu float32: 12.50 vs "
        "10.00 ms median, and holds 0.31x the weight bytes (31.0 vs 100.0 MiB)."
    ]
    assert attention_comparison(data) == [
        "auto is 1.25x faster than eager for alpha forward at batch 1 x 32 on cpu float32: 10.00 vs 12.50 ms "
        "median.",
        "auto is 1.88x faster than eager for alpha forward compile:default at batch 1 x 32 on cpu float32: "
        "8.00 vs 15.00 ms median.",
        "sdpa is 1.40x faster than eager for alpha forward at batch 2 x 32 on cpu float32: 10.00 vs 14.00 ms "
        "median.",
    ]  # batch 8: sdpa within 5% of auto, nothing said


def test_markdown_html_and_csv_hold_the_variant_table(report: Path) -> None:
    text = (report / "report.md").read_text()
    assert "### forward: variants" in text
    row = r"\| alpha batch 1 x input 32 \(cpu float32\) \| auto +\| none +\| default +\| 8\.00 +\| 1\.25 "
    assert re.search(row, text)
    assert "No item at the defaults was measured for alpha batch 2 x input 32 (cpu float32)" in text
    assert "- compile (default) pays back its 2.0 s after 1,000 calls" in text
    # The model table tells the variants apart.
    assert "| variant" in text and "| attn:eager compile:default |" in text
    assert "<h3>forward: variants</h3>" in (report / "report.html").read_text()
    table = read_csv(report / "variants.csv")
    assert len(table) == 9
    by_variant = {(r["batch_size"], r["variant"]): r for r in table}
    compiled = by_variant[("1", "compile:default")]
    assert (compiled["attn_implementation"], compiled["quantization"], compiled["compile"]) == (
        "auto",
        "none",
        "default",
    )
    assert float(compiled["compile_payback_calls"]) == COMPILE_TIME_S / (DEFAULTS_S - COMPILED_S)
    assert float(compiled["speedup_vs_defaults"]) == DEFAULTS_S / COMPILED_S
    assert float(compiled["compile_base_median_s"]) == DEFAULTS_S
    assert by_variant[("1", "attn:eager compile:default")]["compile_payback_calls"] == "inf"
    assert by_variant[("1", "attn:eager")]["compile_payback_calls"] == ""
    assert by_variant[("2", "attn:sdpa")]["speedup_vs_defaults"] == ""
    assert by_variant[("1", "quant:int8-dynamic")]["parameter_bytes"] == str(31 * MIB)
    units = {r["column"]: r["unit"] for r in read_csv(report / "units.csv")}
    assert units["compile_payback_calls"] == "count" and units["compile_base_median_s"] == "s"
    assert units["speedup_vs_defaults"] == "" and units["compile"] == ""


def test_the_speedup_plot_and_one_heatmap_per_variant(report: Path) -> None:
    manifest = json.loads((report / "plots.json").read_text())
    speedup = [p for p in manifest if p["kind"] == "variant_speedup"]
    assert [Path(p["path"]).name for p in speedup] == ["variant_speedup_forward.png"]
    assert imread(report / speedup[0]["path"]).shape[2] in (3, 4)
    paths = [p["path"] for p in manifest]
    assert len(paths) == len(set(paths))  # no variant's plot overwrote another's


def test_no_plot_or_table_without_two_variants_of_an_item(tmp_path: Path) -> None:
    run = crafted()
    run["benchmarks"] = [item(1, 0.01), item(2, 0.02, attn_implementation="sdpa")]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(run))
    assert tbench_main(["report", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "variants" not in (tmp_path / "out" / "report.md").read_text().split("## forward")[1]
    assert not (tmp_path / "out" / "variants.csv").exists()
    assert not list((tmp_path / "out" / "plots").glob("variant_speedup_*"))
    assert not [s for s in observations(run_of(run, "one").rows) if "faster" in s or "pays back" in s]
