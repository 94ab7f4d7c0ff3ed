"""The HTML report of any webhouse (`webhouse report html`): one self-contained file, opens offline.

- ``figures``: every figure the report shows, one DuckDB query each (a failing one is listed
  as unavailable, never hidden);
- ``charts``: inline SVG charts that scale to their card (no JavaScript, no CDN);
- ``html``: the page: headline numbers, the data's date span, a card per chart or table.

`webhouse demo` renders the same report and adds its ground-truth section (tools/demo/report.py).
"""

from __future__ import annotations

from sinks.report.figures import Figures, read_figures
from sinks.report.html import render_html, write_html

__all__ = ["Figures", "read_figures", "render_html", "write_html"]
