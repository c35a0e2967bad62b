"""Backtest of the forecast at monthly origins: what it would have said then, against what was won.

At each origin D (the first instant of a month) the funnel is cut to the spells known before D
(`spells_known_at`), the model is learned from that cut alone, and the forecast for the next 1 and 3
calendar months is compared with the revenue actually won in them: deals whose first entry into a won
stage falls in the window, at their amount in EUR, leads created after D included (the forecast covers
them too). Nothing after D reaches the forecast: the only inputs read after the cut are the actuals.

Methods: `learned` (expected value and P10/P50/P90 of the simulation), `naive` (weighted pipeline of
the deals open at D placed by their expected close date, an overdue date in the first month), and
`naive_unphased` (the whole weighted pipeline, what a CRM's pipeline screen shows, set against each
window). Per origin x horizon x business line (and 'all'); the summary gives per horizon x line x
method: MAPE = mean |F - A| / A over origins with A > 0, bias = mean (F - A) / A, coverage = share of
origins with P10 <= A <= P90 (learned only).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import polars as pl

from transforms.forecast import (
    MONEY_SCALE,
    TOTAL,
    ForecastSettings,
    _add_months,
    learn_funnel_model,
    month_edges,
    naive_by_month,
    open_deals_at,
    score_open_deals,
    seed_for,
    simulate,
    spells_known_at,
    won_deals,
)
from transforms.forecast_chain import exact_sum

HORIZONS = (1, 3)


def backtest_origins(
    first_event_at: datetime, as_of_date: date, warmup_months: int, horizon_months: int
) -> list[datetime]:
    """Month starts from `warmup_months` after the first event to the last whose horizon has ended
    by the as-of date (so every actual is complete)."""
    first = _add_months(date(first_event_at.year, first_event_at.month, 1), warmup_months + 1)
    origins = []
    current = first
    while _add_months(current, horizon_months) <= as_of_date:
        origins.append(datetime.combine(current, datetime.min.time()))
        current = _add_months(current, 1)
    return origins


def _won_by_line(spells: pl.LazyFrame, start: datetime, end: datetime) -> dict[str, float]:
    won = won_deals(spells, start, end).collect()
    totals = (
        won.sort("business_line", "deal_id")
        .group_by("business_line")
        .agg(exact_sum(pl.col("amount_reporting").fill_null(0.0), MONEY_SCALE))
    )
    out = dict(totals.iter_rows())
    out[TOTAL] = float(sum(out.values()))
    return out


def backtest_at(
    spells: pl.LazyFrame, stages: pl.DataFrame, origin: datetime, settings: ForecastSettings
) -> pl.DataFrame:
    """Forecast and actual at one origin: one row per horizon x business line (and 'all') x method."""
    known = spells_known_at(spells, origin)
    model = learn_funnel_model(known, stages, origin, settings)
    scored = score_open_deals(open_deals_at(known, origin), model, settings).collect()
    horizon = max(HORIZONS)
    _, edges = month_edges(origin, horizon)
    sim = simulate(scored, model, edges, seed_for(origin), settings)
    naive = naive_by_month(scored, sim.groups, origin, edges)
    lines = sim.groups.get_column("business_line").to_list()
    unphased = (
        scored.sort("business_line", "deal_id")
        .group_by("business_line")
        .agg(exact_sum(pl.col("naive_weighted_amount"), MONEY_SCALE))
        .iter_rows()
    )
    unphased_by_line = dict(unphased)
    unphased_by_line[TOTAL] = float(sum(unphased_by_line.values()))
    rows = []
    for h in HORIZONS:
        end = datetime.combine(_add_months(origin.date(), h), datetime.min.time())
        actual = _won_by_line(spells, origin, end)
        for line in [*sorted(set(lines)), TOTAL]:
            g = np.array([i for i, x in enumerate(lines) if line in (x, TOTAL)], dtype=np.int64)
            draws = (sim.open_draws[:, g, :h] + sim.new_draws[:, g, :h]).sum(axis=(1, 2))
            p10, p50, p90 = np.percentile(draws, [10, 50, 90])
            common = {
                "origin_date": origin.date(),
                "horizon_months": h,
                "window_end_date": end.date(),
                "business_line": line,
                "actual_won_revenue": float(actual.get(line, 0.0)),
                "open_deal_count": int(
                    scored.height if line == TOTAL else scored.filter(pl.col("business_line") == line).height
                ),
                "training_transitions": model.transitions_observed,
            }
            expected = float(sim.open_expected[g, :h].sum() + sim.new_expected[g, :h].sum())
            for method, forecast, bounds in [
                ("learned", expected, (float(p10), float(p50), float(p90))),
                ("naive", float(naive[g, :h].sum()), (None, None, None)),
                ("naive_unphased", float(unphased_by_line.get(line, 0.0)), (None, None, None)),
            ]:
                rows.append(
                    common
                    | {
                        "method": method,
                        "forecast_revenue": forecast,
                        "forecast_p10": bounds[0],
                        "forecast_p50": bounds[1],
                        "forecast_p90": bounds[2],
                    }
                )
    return pl.DataFrame(
        rows,
        schema_overrides={"forecast_p10": pl.Float64, "forecast_p50": pl.Float64, "forecast_p90": pl.Float64},
    )


def backtest(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings | None = None,
) -> pl.DataFrame:
    """One row per origin x horizon (1, 3 months) x business line (and 'all') x method, with errors."""
    settings = settings or ForecastSettings()
    spells = spells.collect().lazy()  # read once, cut many times
    frames = [backtest_at(spells, stages, origin, settings) for origin in origins]
    if not frames:
        return pl.DataFrame()
    return (
        pl.concat(frames)
        .with_columns(error=pl.col("forecast_revenue") - pl.col("actual_won_revenue"))
        .with_columns(
            percentage_error=pl.when(pl.col("actual_won_revenue") > 0).then(
                pl.col("error") / pl.col("actual_won_revenue")
            ),
            is_actual_in_p10_p90=pl.when(pl.col("forecast_p10").is_not_null()).then(
                pl.col("actual_won_revenue").is_between(pl.col("forecast_p10"), pl.col("forecast_p90"))
            ),
        )
        .with_columns(absolute_percentage_error=pl.col("percentage_error").abs())
        .select(
            "origin_date",
            "horizon_months",
            "window_end_date",
            "business_line",
            "method",
            "forecast_revenue",
            "forecast_p10",
            "forecast_p50",
            "forecast_p90",
            "actual_won_revenue",
            "error",
            "percentage_error",
            "absolute_percentage_error",
            "is_actual_in_p10_p90",
            "open_deal_count",
            "training_transitions",
        )
        .sort("origin_date", "horizon_months", "business_line", "method")
    )


def backtest_summary(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per horizon x business line x method: MAPE, bias, P10-P90 coverage over the origins."""
    return (
        rows.group_by("horizon_months", "business_line", "method")
        .agg(
            origins=pl.len(),
            first_origin_date=pl.col("origin_date").min(),
            last_origin_date=pl.col("origin_date").max(),
            mape=pl.col("absolute_percentage_error").mean(),
            median_ape=pl.col("absolute_percentage_error").median(),
            bias=pl.col("percentage_error").mean(),
            p10_p90_coverage=pl.col("is_actual_in_p10_p90").cast(pl.Float64).mean(),
            total_forecast_revenue=pl.col("forecast_revenue").sum(),
            total_actual_won_revenue=pl.col("actual_won_revenue").sum(),
        )
        .sort("horizon_months", "business_line", "method")
    )
