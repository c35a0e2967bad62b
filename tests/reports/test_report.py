import re
from datetime import date, datetime

import duckdb
import polars as pl

from reports.data import load_report_data
from reports.render import html_table, render_report


def test_text_from_the_extracts_shows_as_text_never_as_markup():
    table = html_table(
        pl.DataFrame({"client_name": ["<script>alert(1)</script>", "A & B <b>"], "hours": [3.5, 1.0]})
    )
    assert "<script>" not in table
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "A &amp; B &lt;b&gt;" in table


def test_the_report_on_the_sample_is_self_contained_and_escapes_client_names(sample_warehouse):
    with duckdb.connect(str(sample_warehouse.published_path), read_only=True) as conn:
        data = load_report_data(conn)
    # The sample holds a client literally named <script>alert(1)</script>; put it in the report's list.
    planted = pl.DataFrame(
        {
            "client_name": ["<script>alert(1)</script>"],
            "segment": ["smb"],
            "effort_hours": [40.0],
            "margin_reporting": [0.0],
            "margin_per_effort_hour": [0.0],
        }
    )
    data = type(data)(
        **{
            **data.__dict__,
            "effort_without_return": pl.concat([planted, data.effort_without_return], how="vertical_relaxed"),
        }
    )

    html = render_report(data, datetime(2026, 11, 27, 6, 0))

    assert data.as_of_date == date(2026, 11, 26)
    assert re.findall(r"<script", html, flags=re.IGNORECASE) == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.findall(r"(?:src|href)=\"https?:", html) == []  # nothing fetched from a network
    assert html.count("data:image/png;base64,") == 3
    for heading in (
        "Funnel,",
        "Forecast",
        "Backtest accuracy",
        "Lead requirements",
        "Client base",
        "Segment scorecard",
        "Data quality",
    ):
        assert heading in html
    assert data.funnel.height > 0 and data.forecast.height > 0 and data.lead_gap.height > 0
    assert data.scorecard.height > 0 and data.pareto["turnover_share"].max() <= 1.0 + 1e-9


def test_the_pipeline_writes_the_report_beside_the_published_file(sample_warehouse):
    report = sample_warehouse.published_path.parent / "report.html"
    assert report.exists()
    assert "Sales funnel report" in report.read_text(encoding="utf-8")
