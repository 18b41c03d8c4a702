"""``report.html``: one self-contained file (CSS and a few lines of JS inline, plots as data: URIs) that
opens offline and can be mailed or attached to a CI run as it is."""

from __future__ import annotations

import base64
import re
from html import escape

from pytest_tbench.show.report.document import Document
from pytest_tbench.show.report.tables import Table

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; cursor: pointer; user-select: none; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
figure { margin: 0 0 1em; } figcaption { font-size: 0.85em; color: #555; }
"""

# Click a header to sort by it; numbers (with thousands separators) sort as numbers, n/a last.
_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th, _) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var key = function (row) {
      var text = row.cells[col].textContent.trim(), num = parseFloat(text.replace(/,/g, ""));
      return isNaN(num) ? text : num;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === "n/a") return 1; if (y === "n/a") return -1;
      var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return asc ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


_NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?( \S+)?$")


def _cell(text: str, link: str | None = None) -> str:
    css = ' class="num"' if _NUMBER.match(text) else ""
    content = escape(text) if link is None else f'<a href="{escape(link)}">{escape(text)}</a>'
    return f"<td{css}>{content}</td>"


def _table(table: Table, level: int = 3, sortable: bool = True) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(_cell(c, table.links.get((r, k))) for k, c in enumerate(row)) + "</tr>"
        for r, row in enumerate(table.cells)
    )
    css = ' class="sortable"' if sortable else ""
    note = f"<p>{escape(table.note)}</p>\n" if table.note else ""
    return (
        f"<h{level}>{escape(table.title)}</h{level}>\n"
        f"<table{css}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n{note}"
    )


def render_html(document: Document) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(document.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(document.title)}</h1>",
        "<h2>Environment</h2>",
        _table(document.environment, sortable=False).split("\n", 1)[1],
        "<h2>Observations</h2><ul>",
        *(f"<li>{escape(s)}</li>" for s in document.observations),
        "</ul>" if document.observations else "<li>none: too few points to say more</li></ul>",
    ]
    for section in document.sections:
        parts.append(f"<h2>{escape(section.title)}</h2>")
        parts += [_table(table) for table in section.tables]
        for plot in section.plots:
            data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
            parts.append(
                f'<figure><img alt="{escape(plot.title)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{escape(plot.title)}</figcaption></figure>"
            )
    if document.not_measured is not None:
        parts.append(_table(document.not_measured, level=2))
    parts += [f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(parts)
