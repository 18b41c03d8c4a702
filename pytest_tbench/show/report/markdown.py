"""``report.md``: GitHub-flavoured Markdown, plots linked by their path next to the file."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from pytest_tbench.show.report.document import Document
from pytest_tbench.show.report.tables import Table


def _table(table: Table, level: str = "###") -> list[str]:
    cells = [
        [f"[{c}]({table.links[(r, k)]})" if (r, k) in table.links else c for k, c in enumerate(row)]
        for r, row in enumerate(table.cells)
    ]
    body = tabulate(cells, table.headers, tablefmt="github", disable_numparse=True)
    note = [table.note, ""] if table.note else []
    return [f"{level} {table.title}", "", body, "", *note]


def render_markdown(document: Document, out_dir: Path) -> str:
    lines = [f"# {document.title}", "", "## Environment", ""]
    lines += _table(document.environment, "###")[2:]
    lines += ["## Observations", ""]
    lines += [f"- {sentence}" for sentence in document.observations] or ["- none: too few points to say more"]
    lines.append("")
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for table in section.tables:
            lines += _table(table)
        for plot in section.plots:
            lines += [f"![{plot.title}]({plot.path.relative_to(out_dir).as_posix()})", ""]
    if document.not_measured is not None:
        lines += _table(document.not_measured, "##")
    return "\n".join(lines)
