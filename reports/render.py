"""The report page: one HTML file with its styles and charts inside, readable offline.

Every value from the warehouse is escaped by the template engine (autoescape), so text that came from
an extract, such as a client named `<script>alert(1)</script>`, shows as text and never as markup.
"""

from __future__ import annotations

import math
import os
from datetime import date, datetime
from pathlib import Path

import jinja2
import polars as pl
from markupsafe import Markup, escape

from reports import charts
from reports.data import ReportData

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>Sales funnel report, {{ data.as_of_date }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 2px solid #1f5f8b; padding-bottom: .2rem; margin-top: 2.2rem; }
.meta { color: #666; } table { border-collapse: collapse; margin: .6rem 0; font-size: 12.5px; }
th, td { border-bottom: 1px solid #ddd; padding: .25rem .55rem; text-align: right; }
th { background: #f3f6f9; } td:first-child, th:first-child, td.text { text-align: left; }
img { max-width: 100%; } .scroll { overflow-x: auto; } .blocked { color: #b8433f; font-weight: 600; }
</style></head><body>
<h1>Sales funnel report</h1>
<p class="meta">As of {{ data.as_of_date }} (the latest extract date) &middot; published version
{{ data.published_version }} &middot; written {{ written_at }}</p>
{% if blocked %}<p class="blocked">The latest run was blocked and not published: {{ blocked }}</p>{% endif %}

<h2>Funnel, {{ data.funnel_period }}</h2>
<p>Deals that reached each stage in the quarter (any-stage funnel), conversion, time in stage
(completed stays) and the deals open in the stage now, with those past the stage's SLA.</p>
<img alt="funnel chart" src="data:image/png;base64,{{ images.funnel }}">
{{ tables.funnel }}

<h2>Forecast</h2>
<p>Expected won revenue from the open funnel and the leads still to come, with its P10-P90 range, beside
the CRM's naive weighted pipeline. Backtest: at monthly origins the pipeline was rebuilt as of the
origin and forecast with what was known then.</p>
<img alt="forecast chart" src="data:image/png;base64,{{ images.forecast }}">
{{ tables.forecast }}
<h3>Backtest accuracy (all business lines)</h3>
{{ tables.backtest }}

<h2>Lead requirements, {{ data.lead_period }}</h2>
<p>Per business line and segment: target, what is won and expected from the open pipeline, the gap, and
the leads needed per month against the recent inflow.</p>
{{ tables.lead_gap }}

<h2>Client base</h2>
<img alt="ABC Pareto curve" src="data:image/png;base64,{{ images.pareto }}">
{{ tables.abc_counts }}
<h3>Segment scorecard: niches to focus on (industry x use case)</h3>
{{ tables.scorecard }}
<h3>High effort, low return</h3>
{{ tables.effort }}

<h2>Data quality</h2>
{{ tables.data_quality }}
<h3>Publications</h3>
{{ tables.publication_log }}
</body></html>
"""

_environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (date, datetime)):
        return (
            value.isoformat(sep=" ", timespec="minutes") if isinstance(value, datetime) else value.isoformat()
        )
    return str(value)


def html_table(frame: pl.DataFrame) -> Markup:
    """A table whose every cell is escaped; the result is safe markup for the page."""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = "".join(
            f'<td class="text">{escape(_cell(v))}</td>'
            if isinstance(v, str)
            else f"<td>{escape(_cell(v))}</td>"
            for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    if not rows:
        rows.append(f'<tr><td class="text" colspan="{len(frame.columns)}">(none)</td></tr>')
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return Markup(f'<div class="scroll">{table}</div>')


def render_report(data: ReportData, written_at: datetime) -> str:
    last = data.publication_log.head(1)
    blocked = last["reason"][0] if last.height and last["status"][0] == "blocked" else None
    images = {
        "funnel": charts.funnel_chart(data.funnel),
        "forecast": charts.forecast_chart(data.forecast),
        "pareto": charts.pareto_chart(data.pareto),
    }
    tables = {
        "funnel": html_table(data.funnel),
        "forecast": html_table(data.forecast),
        "backtest": html_table(data.backtest),
        "lead_gap": html_table(data.lead_gap),
        "abc_counts": html_table(data.abc_counts),
        "scorecard": html_table(data.scorecard),
        "effort": html_table(data.effort_without_return),
        "data_quality": html_table(data.data_quality),
        "publication_log": html_table(data.publication_log),
    }
    return _environment.from_string(TEMPLATE).render(
        data=data,
        images=images,
        tables=tables,
        blocked=blocked,
        written_at=written_at.isoformat(timespec="seconds"),
    )


def write_report(html: str, path: Path) -> Path:
    """Write beside the target and rename over it, so a browser never loads half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.next")
    staging.write_text(html, encoding="utf-8")
    os.replace(staging, path)
    return path
