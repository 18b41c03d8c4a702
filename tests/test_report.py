"""Reports: `tbench report` and --tbench-report, on a crafted run whose numbers the tests choose."""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from pytest_tbench.cli import main as tbench_main
from pytest_tbench.show.report import load_runs, run_of, write_report
from pytest_tbench.show.report.csvs import IDENTITY_COLUMNS, STATS_COLUMNS
from pytest_tbench.show.report.observations import observations
from pytest_tbench.show.report.plots import DPI, heatmap_figsize, render_plots

from .conftest import TINY

MIB = 1024 * 1024
BATCHES = (1, 2, 4, 8)
LENGTHS = (32, 64)
# tokens/s by batch size: alpha gains under 10% past batch 2, beta doubles every time.
ALPHA_TPS = {1: 1000.0, 2: 1800.0, 4: 1850.0, 8: 1900.0}
BETA_TPS = {1: 500.0, 2: 1000.0, 4: 2000.0, 8: 4000.0}
# The item whose metrics are missing (extra_info empty): shown as n/a, left out of scaling claims.
BARE = ("alpha", 8, 64)


def bench(
    mode: str, model: str, batch: int, seq: int, median: float, extra: dict[str, Any], new: int = 0
) -> dict[str, Any]:
    new_part = f"-n{new}" if new else ""
    name = f"test_{mode}[{model}-b{batch}-s{seq}{new_part}-cpu-float32]"
    case = {
        "mode": mode,
        "model": model,
        "head": "base" if mode == "forward" else "lm",
        "batch_size": batch,
        "seq_len": seq,
        "device": "cpu",
        "dtype": "float32",
        "new_tokens": new,
    }
    samples = [median * f for f in (0.98, 1.0, 1.02)]
    stats = {
        "min": min(samples),
        "max": max(samples),
        "mean": median,
        "median": median,
        "stddev": 0.02 * median,
        "iqr": 0.02 * median,
        "rounds": 3,
        "data": samples,
    }
    return {
        "group": None,
        "name": name,
        "fullname": f"benches/test_{mode}.py::{name}",
        "params": {"tbench_case": case},
        "stats": stats,
        "extra_info": extra,
    }


def forward_item(model: str, batch: int, seq: int) -> dict[str, Any]:
    tps = (ALPHA_TPS if model == "alpha" else BETA_TPS)[batch]
    median = batch * seq / tps
    if (model, batch, seq) == BARE:
        return bench("forward", model, batch, seq, median, {})
    extra = {
        "median_s": median,
        "throughput_samples_per_s": batch / median,
        "throughput_tokens_per_s": tps,
        "peak_memory_bytes": (500 + 10 * batch * seq // 32) * MIB,
        "peak_memory_increase_bytes": 10 * batch * seq // 32 * MIB,
        "peak_memory_kind": "cpu_rss",
        "num_parameters": 1234,
        "model_load_time_s": 0.5,
        "rounds": 3,
        "process_medians_s": [median, median],  # a list: left out of the CSV
    }
    return bench("forward", model, batch, seq, median, extra)


def generate_item(batch: int, seq: int) -> dict[str, Any]:
    # Prefill is 30% of the request at input 64 and 20% at input 32.
    total = 0.1 * batch
    ttft = total * (0.3 if seq == 64 else 0.2)
    extra = {
        "median_s": total,
        "ttft_mean_s": ttft,
        "decode_time_mean_s": total - ttft,
        "total_time_mean_s": total,
        "decode_tokens_per_s": batch * 9 / (total - ttft),
        "e2e_tokens_per_s": batch * 10 / total,
        "peak_memory_bytes": 600 * MIB,
    }
    return bench("generate", "alpha", batch, seq, total, extra, new=10)


def crafted_run() -> dict[str, Any]:
    benchmarks = [forward_item(m, b, s) for m in ("alpha", "beta") for b in BATCHES for s in LENGTHS]
    benchmarks += [generate_item(b, s) for b in (1, 2) for s in LENGTHS]
    benchmarks.append(bench("serve", "alpha", 1, 32, 0.05, {"median_s": 0.05, "queue_wait_s": 0.001}))
    return {
        "machine_info": {
            "node": "crafted",
            "tbench": {
                "python_version": "3.11.2",
                "torch_version": "2.13.0+cpu",
                "transformers_version": "4.99.0",
                "cpu": "Crafted CPU",
                "cpu_count_logical": 2,
                "ram_total_bytes": 8 * 1024**3,
                "gpus": [],
                "settings": {"preset": {"value": "quick_test", "source": "command line"}},
            },
        },
        "commit_info": {"id": "0123456789abcdef", "dirty": False, "branch": "main"},
        "benchmarks": benchmarks,
        "datetime": "2025-01-01T00:00:00+00:00",
        "version": "5.1.0",
        "tbench": {
            "not_measured": [{"fullname": "benches/test_forward.py::test_forward[x]", "outcome": "skipped"}]
        },
    }


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run") / "crafted.json"
    path.write_text(json.dumps(crafted_run()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report(run_file: Path) -> Path:
    """One report of the crafted run, shared by the tests that only read it (plots take seconds)."""
    out = run_file.parent / "report"
    assert tbench_main(["report", str(run_file), "--out", str(out)]) == 0
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_has_a_row_per_item_with_every_scalar_metric(report: Path, run_file: Path) -> None:
    run = json.loads(run_file.read_text())
    rows = read_csv(report / "items_forward.csv")
    header = list(rows[0])
    assert header[: len(IDENTITY_COLUMNS) + len(STATS_COLUMNS)] == [*IDENTITY_COLUMNS, *STATS_COLUMNS]
    assert "stats_median_s" in header and "throughput_tokens_per_s" in header
    assert "process_medians_s" not in header  # lists are not CSV cells
    by_name = {row["fullname"]: row for row in rows}
    forward = [b for b in run["benchmarks"] if b["params"]["tbench_case"]["mode"] == "forward"]
    assert len(by_name) == len(forward) == 16
    for entry in forward:
        row = by_name[entry["fullname"]]
        case = entry["params"]["tbench_case"]
        assert (row["model"], int(row["batch_size"]), int(row["seq_len"])) == (
            case["model"],
            case["batch_size"],
            case["seq_len"],
        )
        assert float(row["stats_median_s"]) == pytest.approx(entry["stats"]["median"])
        assert int(row["stats_rounds"]) == 3 and row["new_tokens"] == "0"
        for key in ("throughput_tokens_per_s", "peak_memory_bytes", "median_s"):
            expected = entry["extra_info"].get(key)
            assert row[key] == ("" if expected is None else str(expected))
    units = {row["column"]: row["unit"] for row in read_csv(report / "units.csv")}
    assert units["throughput_tokens_per_s"] == "tokens/s"
    assert units["peak_memory_bytes"] == "bytes"
    assert units["stats_median_s"] == "s" and units["ttft_mean_s"] == "s"
    assert units["num_parameters"] == "count" and units["seq_len"] == "tokens"
    assert set(units) >= set(header)
    generate = read_csv(report / "items_generate.csv")
    assert {r["new_tokens"] for r in generate} == {"10"} and "ttft_mean_s" in generate[0]
    # The unknown mode has its own file; the environment is key/value rows.
    serve = read_csv(report / "items_serve.csv")
    assert [(r["model"], r["queue_wait_s"]) for r in serve] == [("alpha", "0.001")]
    environment = {(r["key"], r["value"]) for r in read_csv(report / "environment.csv")}
    assert ("torch_version", "2.13.0+cpu") in environment and ("commit.id", "0123456789abcdef") in environment


def test_plots_are_pngs_of_the_grid(report: Path) -> None:
    manifest = json.loads((report / "plots.json").read_text())
    names = {Path(p["path"]).name for p in manifest}
    expected = {
        f"{kind}_{model}_forward.png"
        for kind in (
            "latency_heatmap",
            "throughput_heatmap",
            "memory_heatmap",
            "batch_scaling",
            "length_scaling",
        )
        for model in ("alpha", "beta")
    }
    expected |= {
        f"{kind}_alpha_generate.png"
        for kind in ("latency_heatmap", "throughput_heatmap", "memory_heatmap", "batch_scaling")
    }
    expected |= {
        "length_scaling_alpha_generate.png",
        "prefill_decode_alpha_generate.png",
        "comparison_forward.png",
    }
    assert names == expected  # the one-point serve grid gets no plot; generate has one model: no comparison
    assert {p.name for p in (report / "plots").iterdir()} == names
    for plot in manifest:
        path = report / plot["path"]
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        if plot["kind"].endswith("heatmap"):
            height, width, _ = imread(path).shape
            batches, lengths = (4, 2) if plot["mode"] == "forward" else (2, 2)
            assert plot["grid"] == [batches, lengths]
            fig_w, fig_h = heatmap_figsize(batches, lengths)
            assert (width, height) == (round(fig_w * DPI), round(fig_h * DPI))


def test_heatmap_needs_two_sizes_on_an_axis(tmp_path: Path) -> None:
    run = crafted_run()
    run["benchmarks"] = [forward_item("beta", 2, 32)]
    assert render_plots(run_of(run, "one").rows, tmp_path) == []


def test_observations_follow_the_numbers(run_file: Path) -> None:
    said = observations(load_runs([run_file])[0].rows)
    text = "\n".join(said)
    assert "Throughput of alpha stops growing past batch 2 at input 32, 64 on cpu" in text
    assert "Throughput of beta" not in text  # it doubles with every batch
    assert "Prefill is 30% of total latency at input 64 for alpha (batch 1" in text
    assert "; 20% at input 32." in text
    # beta's latency at batch 1 is proportional to the input; its memory grows 10 MiB per batch row at 64.
    assert "Latency of beta grows roughly linearly with input length (forward, cpu float32, batch 1)" in text
    assert "Peak memory of beta grows by" in text
    assert "On the 8 forward items all 2 models ran (crafted), alpha is the fastest overall and beta" in text


def test_a_single_point_per_axis_says_nothing_about_scaling() -> None:
    run = crafted_run()
    run["benchmarks"] = [forward_item(m, 4, 32) for m in ("alpha", "beta")]
    said = observations(run_of(run, "flat").rows)
    assert not [s for s in said if "grows" in s or "stops growing" in s]
    assert len(said) == 1 and said[0].startswith("On the 1 forward item all 2 models ran")


def test_markdown_has_environment_summaries_and_missing_values(report: Path) -> None:
    text = (report / "report.md").read_text()
    for heading in ("## Environment", "## Observations", "## forward", "## generate", "## serve"):
        assert heading in text
    assert "| fastest item" in text and "lowest peak memory" in text
    assert "Crafted CPU" in text and "preset=quick_test" in text
    bare = next(line for line in text.splitlines() if line.startswith("| 8 ") and "| 64 " in line)
    assert "n/a" in bare  # alpha b8 s64 has no extra_info
    assert (
        "![alpha forward: median latency (ms)" in text and "(plots/latency_heatmap_alpha_forward.png)" in text
    )
    assert "## Items not measured" in text


def test_two_runs_are_compared(tmp_path: Path) -> None:
    # beta's forward items only, to keep the plots few.
    base = crafted_run()
    base["benchmarks"] = [b for b in base["benchmarks"] if "[beta-" in b["name"]]
    run_file = tmp_path / "crafted.json"
    run_file.write_text(json.dumps(base))
    slower = copy.deepcopy(base)
    for entry in slower["benchmarks"]:
        entry["stats"]["median"] *= 1.5
        if "median_s" in entry["extra_info"]:
            entry["extra_info"]["median_s"] *= 1.5
    other = tmp_path / "slower.json"
    other.write_text(json.dumps(slower))
    out = tmp_path / "both"
    assert tbench_main(["report", str(run_file), str(other), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "beta forward in slower is slower than in crafted: median latency x1.50" in text
    assert (out / "plots" / "comparison_forward.png").is_file()
    assert (out / "plots" / "latency_heatmap_beta_forward_slower.png").is_file()


def test_an_ab_run_shows_its_base_side_as_a_run_and_its_verdicts(tmp_path: Path) -> None:
    run = crafted_run()
    item = forward_item("beta", 1, 32)
    verdict = {
        "criterion": "time:5%", "status": "REGRESSED", "base": 0.032, "current": 0.064, "change": 1.0,
        "unit": "s", "low": 0.9, "high": 1.1, "confidence": 0.99, "pairs": 4, "paired_rounds": 6, "text": "t",
    }  # fmt: skip
    base_info = {k: v for k, v in item["extra_info"].items() if not k.startswith("throughput")}
    item["extra_info"]["ab_base"] = {**base_info, "rounds_s": [0.02, 0.03, 0.031, 0.05]}
    sides = {"base": {"spec": "HEAD~1", "torch_version": "2.12.0"}, "current": {}}
    item["extra_info"]["ab"] = {"sides": sides, "verdicts": [verdict]}
    run["benchmarks"] = [item, forward_item("alpha", 1, 32)]  # alpha: measured without --tbench-ab
    path = tmp_path / "ab.json"
    path.write_text(json.dumps(run))
    out = tmp_path / "report"
    assert tbench_main(["report", str(path), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| ab base (HEAD~1) " in text  # a column of the environment table
    assert re.search(r"\| torch +\| 2\.12\.0 +\| 2\.13\.0\+cpu +\|", text)
    assert "## A/B" in text and "+100.0% [+90.0%, +110.0%] | REGRESSED" in text
    # The base side's median comes from its own rounds; only the A/B item has a base side.
    assert "### forward: beta [ab base (HEAD~1)]" in text and "### forward: alpha [ab base" not in text
    rows = read_csv(out / "items_forward.csv")
    base_row = next(r for r in rows if r["run"] == "ab base (HEAD~1)")
    assert float(base_row["stats_median_s"]) == pytest.approx(0.0305)
    assert [r["model"] for r in rows if r["run"] == "ab base (HEAD~1)"] == ["beta"]
    assert (out / "plots" / "comparison_forward.png").is_file()
    assert text.count("test_forward[x]") == 1  # items not measured are listed once, under the run


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"results": []}', "is not a pytest-benchmark run: it has no 'benchmarks' list"),
        ("{not json", "is not readable JSON"),
        (None, "does not exist"),
    ],
)
def test_a_file_that_is_not_a_run_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, problem: str
) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    assert tbench_main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tbench report: ") and str(path) in err and problem in err
    assert not (tmp_path / "out").exists()


def test_unknown_mode_and_missing_metrics_do_not_crash(tmp_path: Path) -> None:
    run = crafted_run()
    run["benchmarks"] = [forward_item("alpha", 1, 32), run["benchmarks"][-1]]  # one forward, one serve item
    odd = copy.deepcopy(run["benchmarks"][0])
    odd.pop("params")
    odd["extra_info"] = {"weird": {"nested": 1}}
    odd["stats"] = {}
    run["benchmarks"].append(odd)
    run["benchmarks"].append({"name": "from-another-plugin", "stats": {"median": 0.1}})
    written = write_report([run_of(run, "odd")], tmp_path)
    assert tmp_path / "report.html" in written
    unknown = read_csv(tmp_path / "items_unknown.csv")
    # The item id still gives the coordinates of an entry without params.
    assert [(r["model"], r["batch_size"], r["stats_median_s"]) for r in unknown] == [
        ("alpha", "1", ""),
        ("?", "", "0.1"),
    ]


def test_run_data_cannot_name_files_outside_the_report_or_run_as_a_spreadsheet_formula(
    tmp_path: Path,
) -> None:
    """A run file is input: a mode of "../x" stays a file inside the report folder, and a text cell that a
    spreadsheet would run as a formula (=, +, -, @) is written as text."""
    item = bench("../../escaped", "alpha", 1, 32, 0.01, {"note": '=HYPERLINK("http://x","y")', "level": -3})
    run = crafted_run()
    run["benchmarks"] = [item]
    out = tmp_path / "report"
    write_report([run_of(run, "evil")], out)
    assert not (tmp_path / "escaped.csv").exists() and not list(tmp_path.glob("items_*"))
    (written,) = out.glob("items_*.csv")
    assert written == out / "items_escaped.csv"
    row = read_csv(written)[0]
    assert row["note"] == '\'=HYPERLINK("http://x","y")' and row["level"] == "-3"


def test_tbench_report_option_writes_the_session(forward_bench: pytest.Pytester) -> None:
    args = [*TINY, "--tbench-batch-sizes", "1,2", "--tbench-seq-lens", "8,16", "--tbench-report", "rep"]
    result = forward_bench.runpytest(*args)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*tbench REPORT*", f"tbench report: * files written to {forward_bench.path / 'rep'}"]
    )
    rows = read_csv(forward_bench.path / "rep" / "items_forward.csv")
    assert sorted((r["batch_size"], r["seq_len"]) for r in rows) == [
        ("1", "16"),
        ("1", "8"),
        ("2", "16"),
        ("2", "8"),
    ]
    assert all(r["model"] == "tiny-gpt2" and float(r["throughput_tokens_per_s"]) > 0 for r in rows)
    assert (forward_bench.path / "rep" / "plots" / "latency_heatmap_tiny-gpt2_forward.png").is_file()
    assert "torch_version" in (forward_bench.path / "rep" / "environment.csv").read_text()


def test_a_report_failure_keeps_the_results(forward_bench: pytest.Pytester) -> None:
    (forward_bench.path / "taken").write_text("a file, not a folder")
    out = forward_bench.path / "out.json"
    result = forward_bench.runpytest(*TINY, "--tbench-report", "taken", f"--benchmark-json={out}")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["tbench report: not written to *taken: *"])
    assert len(json.loads(out.read_text())["benchmarks"]) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the report: after load, count the images that decoded, click the "median (ms)" header
# of the first model table, and put the findings in the title for --dump-dom to show.
PROBE = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images), ok = imgs.filter(function (i) { return i.naturalWidth > 0; });
  var th = Array.from(document.querySelectorAll("table.sortable th")).find(function (h) {
    return h.textContent === "median (ms)";
  });
  th.click();
  var values = Array.from(th.closest("table").tBodies[0].rows).map(function (r) {
    return r.cells[th.cellIndex].textContent.trim();
  });
  document.title = "probe imgs=" + ok.length + "/" + imgs.length + " sorted=" + values.join("|");
});
</script>
"""


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.sources.append(value)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_opens_offline_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    html = (report / "report.html").read_text()
    parser = _Resources()
    parser.feed(html)
    assert parser.sources and all(s.startswith("data:image/png;base64,") for s in parser.sources)
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    title = re.search(r"<title>probe imgs=(\d+)/(\d+) sorted=(.*?)</title>", done.stdout)
    assert title, done.stdout[:500]
    assert title[1] == title[2] == str(len(parser.sources))
    assert "ERR_FILE_NOT_FOUND" not in done.stderr and "Failed to load resource" not in done.stderr
    # A click on the header sorts numerically (as numbers, not text: "10.00" after "9.00"), n/a last.
    values = title[3].split("|")
    numbers = [float(v.replace(",", "")) for v in values if v != "n/a"]
    assert len(numbers) == 8 and numbers == sorted(numbers)  # unsorted before: b1 s64 64 ms, b2 s32 36 ms


def test_a_row_of_an_image_item_is_labelled_by_its_input() -> None:
    from pytest_tbench.show.report.frame import Row

    def row(seq_len: int, media: str) -> Row:
        extra: dict[str, Any] = {"media": media} if media else {}
        return Row("r", "x", "forward", "m", "base", 4, seq_len, "cpu", "float32", 0, extra=extra)

    assert row(0, "img224").label == "b4 img224"  # no token length: the fixed input instead of "s0"
    assert row(32, "img224").label == "b4 s32 img224"  # CLIP: text tokens and the image
    assert row(64, "").label == "b4 s64"  # text items as before
