"""Charts as PNG images embedded in the page (base64), so the report works offline with no script."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.pyplot as plt
import polars as pl

COLOURS = ["#1f5f8b", "#e07b39", "#4c9a5b", "#8c5aa8", "#b8433f"]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def funnel_chart(funnel: pl.DataFrame) -> str:
    """Deals reaching each stage, one panel per business line."""
    lines = funnel["business_line"].unique(maintain_order=True).to_list()
    figure, axes = plt.subplots(1, max(len(lines), 1), figsize=(4.2 * max(len(lines), 1), 3.2), squeeze=False)
    for axis, line in zip(axes[0], lines, strict=False):
        rows = funnel.filter(pl.col("business_line") == line).sort("stage_number")
        axis.barh(rows["stage_name"].to_list()[::-1], rows["reached_count"].to_list()[::-1], color=COLOURS[0])
        for y, (n, c) in enumerate(
            zip(
                rows["reached_count"].to_list()[::-1],
                rows["cumulative_conversion"].to_list()[::-1],
                strict=True,
            )
        ):
            axis.text(n, y, f" {n} ({c:.0%})" if c is not None else f" {n}", va="center", fontsize=8)
        axis.set_title(line)
        axis.set_xlabel("deals reaching the stage")
    figure.tight_layout()
    return _png(figure)


def forecast_chart(forecast: pl.DataFrame) -> str:
    """Expected revenue per month with its P10-P90 band, beside the naive weighted pipeline."""
    months = forecast.filter(pl.col("period_type") == "month").sort("period_start")
    x = [d.strftime("%Y-%m") for d in months["period_start"].to_list()]
    figure, axis = plt.subplots(figsize=(8, 3.2))
    axis.fill_between(
        x,
        months["revenue_p10"].to_list(),
        months["revenue_p90"].to_list(),
        color=COLOURS[0],
        alpha=0.2,
        label="P10-P90",
    )
    axis.plot(x, months["expected_revenue"].to_list(), color=COLOURS[0], marker="o", label="expected")
    axis.plot(
        x,
        months["naive_weighted_pipeline"].to_list(),
        color=COLOURS[1],
        linestyle="--",
        label="naive weighted pipeline",
    )
    axis.set_ylabel("won revenue (reporting currency)")
    axis.legend(fontsize=8)
    return _png(figure)


def pareto_chart(pareto: pl.DataFrame) -> str:
    """Cumulative share of turnover against the share of clients, with the ABC thresholds."""
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    axis.plot(pareto["client_share"].to_list(), pareto["turnover_share"].to_list(), color=COLOURS[0])
    for threshold in (0.8, 0.95):
        axis.axhline(threshold, color="#999999", linewidth=0.8, linestyle=":")
    axis.set_xlabel("share of clients (largest first)")
    axis.set_ylabel("cumulative share of turnover")
    axis.set_ylim(0, 1.02)
    return _png(figure)
