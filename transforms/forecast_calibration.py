"""Calibration of the simulated P10-P90 range by the errors of earlier backtest origins (conformal).

The simulation's range covers the randomness the model knows about: which open deals win and when, how
many new leads come and win, the market shock on win rates. It does not cover the model being wrong:
a win rate learned in a calm year met by a crisis, a timing pool that is too fast for this quarter's
deals, a large deal that slips. On the generator's data the simulated range held the actual in 62-71 %
of the backtest origins where 80 % was meant.

What the model's own errors look like is known only where a forecast can be compared with its outcome:
at the backtest origins whose window has closed. For each such row (learned method, every business line
and the total) the score is the extra log-variance the row's range would have needed to hold its actual:

    s_lo = ln(P50 / P10) / z,  s_hi = ln(P90 / P50) / z,  z = 1.2816 (the normal's 90 % quantile)
    widened: P10' = P50 exp(-z sqrt(s_lo^2 + tau^2)),  P90' = P50 exp(z sqrt(s_hi^2 + tau^2))
    score = the smallest tau^2 >= 0 with P10' <= actual <= P90' (0 when the range held the actual).

A forecast made at origin D for a horizon of h months is widened with tau^2 = the ceil(0.8 (n + 1))-th
smallest of the n scores of that horizon whose window ended by D (split conformal: if the scores of the
past and of this origin are exchangeable, the widened range holds the actual with probability >= 80 %).
Below 4 scores no quantile exists and the range stays as simulated (`calibration_scores` tells). The
median never moves and a range never narrows; tau is capped at `MAX_LOG_SD`.

No leakage: a score uses a forecast made before its own origin and an actual of a window that ended by
D, so the widening at D uses nothing from after D. The live forecast uses every backtest window that
ended by its as-of date: the 1-month scores for months, the 3-month scores for quarters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date

import numpy as np
import polars as pl

Z = 1.2815515655446004
"""Standard normal 90 % quantile: P10 and P90 sit z log-standard-deviations from the median."""
COVERAGE = 0.8
MAX_LOG_SD = 2.0
"""Cap of the extra log-spread: a factor of exp(1.28 x 2) = 13 either way, for the case where an
earlier actual could not be held at all (an actual of 0 below a positive range)."""


def _log_spreads(p10: pl.Expr, p50: pl.Expr, p90: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    low = pl.when(p10 > 0).then((p50 / p10).log() / Z).otherwise(float("inf"))
    high = pl.when(p50 > 0).then((p90 / p50).log() / Z).otherwise(float("inf"))
    return low, high


def calibration_score(p10: pl.Expr, p50: pl.Expr, p90: pl.Expr, actual: pl.Expr) -> pl.Expr:
    """The extra log-variance tau^2 the range [p10, p90] around p50 needed to hold `actual`."""
    low, high = _log_spreads(p10, p50, p90)
    below = pl.when(actual > 0).then((p50 / actual).log() / Z).otherwise(float("inf"))
    above = pl.when(p50 > 0).then((actual / p50).log() / Z).otherwise(float("inf"))
    return (
        pl.when(actual.is_between(p10, p90))
        .then(0.0)
        .when(actual < p10)
        .then(below.pow(2) - low.pow(2))
        .otherwise(above.pow(2) - high.pow(2))
        .clip(lower_bound=0.0)
    )


def widened(p10: pl.Expr, p50: pl.Expr, p90: pl.Expr, log_variance: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(P10', P90'): the range widened by an extra log-variance, the median kept; unchanged at 0."""
    low, high = _log_spreads(p10, p50, p90)
    keep = (p50 <= 0) | log_variance.is_null() | (log_variance <= 0)
    new_low = pl.when(keep).then(p10).otherwise(p50 * (-Z * (low.pow(2) + log_variance).sqrt()).exp())
    new_high = pl.when(keep).then(p90).otherwise(p50 * (Z * (high.pow(2) + log_variance).sqrt()).exp())
    return pl.min_horizontal(new_low, p10), pl.max_horizontal(new_high, p90)


def widened_values(p10: float, p50: float, p90: float, log_variance: float) -> tuple[float, float]:
    """`widened` for one range (the live forecast's rows)."""
    out = pl.DataFrame({"p10": [p10], "p50": [p50], "p90": [p90], "v": [log_variance]}).select(
        *widened(pl.col("p10"), pl.col("p50"), pl.col("p90"), pl.col("v"))
    )
    return float(out.item(0, 0)), float(out.item(0, 1))


def conformal_log_variance(scores: np.ndarray, coverage: float = COVERAGE) -> float | None:
    """The ceil(coverage (n + 1))-th smallest score, capped; None when there are too few scores."""
    n = scores.size
    k = math.ceil(coverage * (n + 1))
    if k > n:
        return None
    return float(min(np.sort(scores)[k - 1], MAX_LOG_SD**2))


def calibration_by_origin(scored_rows: pl.DataFrame, origins: list[date]) -> pl.DataFrame:
    """Per origin x horizon: the extra log-variance from the scores of the windows that ended by the
    origin, and how many scores there were.

    `scored_rows`: horizon_months, window_end_date, score (one row per earlier origin x line)."""
    records = []
    horizons = sorted(scored_rows.get_column("horizon_months").unique().to_list())
    for origin in origins:
        for h in horizons:
            scores = (
                scored_rows.filter((pl.col("horizon_months") == h) & (pl.col("window_end_date") <= origin))
                .get_column("score")
                .to_numpy()
            )
            variance = conformal_log_variance(scores)
            records.append(
                {
                    "origin_date": origin,
                    "horizon_months": h,
                    "calibration_log_variance": variance,
                    "calibration_scores": int(scores.size),
                }
            )
    return pl.DataFrame(
        records,
        schema={
            "origin_date": pl.Date,
            "horizon_months": pl.Int64,
            "calibration_log_variance": pl.Float64,
            "calibration_scores": pl.Int64,
        },
    )


def calibration_at(backtest_rows: pl.DataFrame | None, as_of: date) -> dict[int, float]:
    """The extra log-variance per horizon (months) for a forecast made at `as_of`, from the learned
    rows of a backtest table (`forecast_backtest`) whose window ended by then; {} without a backtest
    (or with one written before the calibration existed, which lacks the simulated range)."""
    needed = {"method", "horizon_months", "window_end_date", "simulated_p10", "forecast_p50", "simulated_p90"}
    if backtest_rows is None or backtest_rows.height == 0 or not needed <= set(backtest_rows.columns):
        return {}
    scored = scored_backtest_rows(backtest_rows)
    out = calibration_by_origin(scored, [as_of])
    return {
        int(h): float(v)
        for h, v in out.select("horizon_months", "calibration_log_variance").iter_rows()
        if v is not None
    }


def scored_backtest_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """The learned rows of a backtest with their calibration score (from the simulated range)."""
    return rows.filter(pl.col("method") == "learned").select(
        "origin_date",
        "horizon_months",
        "window_end_date",
        "business_line",
        score=calibration_score(
            pl.col("simulated_p10"),
            pl.col("forecast_p50"),
            pl.col("simulated_p90"),
            pl.col("actual_won_revenue"),
        ),
    )


def horizon_of_period(period_type: str) -> int:
    """The backtest horizon whose scores calibrate a live period: 1 month for months, 3 for quarters."""
    return 1 if period_type == "month" else 3


def log_variance_for(calibration: Mapping[int, float], period_type: str) -> float:
    return float(calibration.get(horizon_of_period(period_type), 0.0))
