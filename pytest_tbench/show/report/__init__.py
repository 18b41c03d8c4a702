"""Reports from saved runs: CSV per mode, ``report.md``, PNG plots and a self-contained ``report.html``.

write_report(load_runs([Path("run.json")]), Path("report/"))
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from pytest_tbench.show.report.ab import verdict_table, with_base_sides
from pytest_tbench.show.report.csvs import write_csvs
from pytest_tbench.show.report.document import Section, build_document
from pytest_tbench.show.report.frame import Run, load_runs, run_of
from pytest_tbench.show.report.html import render_html
from pytest_tbench.show.report.markdown import render_markdown
from pytest_tbench.show.report.plots import render_plots
from pytest_tbench.show.report.profiles import profile_parts

__all__ = ["Run", "load_runs", "run_of", "write_report"]


def write_report(runs: list[Run], out_dir: Path) -> list[Path]:
    """Write every report file for ``runs`` into ``out_dir`` (created if needed); the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = verdict_table(runs)
    profile_tables, profile_plots = profile_parts(runs, out_dir / "plots")  # each A/B side's, by its item
    runs = with_base_sides(runs)  # an A/B run's base side is a run of its own from here on
    written = write_csvs(runs, out_dir)
    plots = render_plots([row for run in runs for row in run.rows], out_dir / "plots") + profile_plots
    profiles = [Section("profiles", profile_tables, profile_plots)] if profile_tables else []
    document = build_document(runs, plots, verdicts, profiles)
    markdown = out_dir / "report.md"
    markdown.write_text(render_markdown(document, out_dir), encoding="utf-8")
    html = out_dir / "report.html"
    html.write_text(render_html(document), encoding="utf-8")
    # What each PNG shows, for tools that pick plots by kind rather than by file name.
    manifest = out_dir / "plots.json"
    entries = [{**asdict(plot), "path": plot.path.relative_to(out_dir).as_posix()} for plot in plots]
    manifest.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return [*written, *(plot.path for plot in plots), markdown, html, manifest]
