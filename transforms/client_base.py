"""Client segmentation: one row per client (`marts.client_segments`), from the client turnover mart,
invoice lines and CRM activities.

Definitions (see `docs/client_base.md` for the reasons):

- **Analysis window.** The last `analysis_months` complete calendar months before the as-of month
  (default 12), so a half-finished month never looks like a drop. Turnover and margin come from
  `marts.fct_client_turnover` (credit notes included, EUR); lifetime totals cover every month up to the
  as-of month and reconcile with the mart.
- **ABC** (by window turnover, and separately by margin): clients sorted by value, largest first (ties
  by client id); the cumulative share includes the client itself. A while the cumulative share is at most
  `abc_a_share` (80 %), B while at most `abc_b_share` (95 %), C the rest. So the A clients together never
  hold more than 80 % and A + B never more than 95 %: the client that crosses a line belongs to the lower
  class. Clients with zero or negative value are C; shares are of the positive total.
- **XYZ**: coefficient of variation (population standard deviation / mean) of the client's monthly
  turnover over the window, months without invoices counted as zero. X when CV <= `xyz_x_max_cv` (0.5),
  Y when <= `xyz_y_max_cv` (1.0), Z above, and Z for a client without positive turnover in the window
  (no pattern to rely on): every client has a class.
- **RFM**: recency = days from the last invoice to the as-of date (lifetime), frequency = invoices in the
  window, monetary = window turnover. Scores 1-5 by quintile among the clients that were ever invoiced
  (5 = best; ties share the lower score); 0 for a client never invoiced.
- **Growth trend**: turnover of the second half of the window against the first half: growing above
  +`growth_band`, declining below -`growth_band`, else stable; new (nothing in the first half), inactive
  (nothing in either).
- **Effort**: CRM activities of the window; an activity with a duration counts its hours, one without
  (emails, some tasks) counts a fixed number of hours per type. High effort = effort at or above the
  `high_effort_quantile` of the clients with any effort; low return = margin per effort hour at or below
  the `low_return_quantile` of the same clients; a client with both is flagged.
- **Headroom**: the `headroom_quantile` (P75) of window turnover among active peers (same sales segment
  and revenue band, at least `min_peer_clients` of them, else the same segment) minus the client's own
  turnover, never below zero; zero for deleted or merged accounts.
- **Price sensitivity**: discount depth = 1 - net / list value of the client's invoice lines (credit
  notes aside, lifetime). High when at least `high_discount_ratio` x the book's depth, low when at most
  `low_discount_ratio` x, else medium; unknown without lines.

Where it runs: the per-client aggregates of turnover, invoice lines and activities are DuckDB SQL
(`client_segments_from_tables`; sums of DECIMAL amounts exact); classes, scores and peers in Polars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl

from transforms.sql import Tables, date_literal, frame_tables

UNKNOWN = "unknown"


def _default_activity_hours() -> dict[str, float]:
    return {"call": 0.25, "meeting": 1.0, "email": 0.1, "task": 0.5}


@dataclass(frozen=True)
class SegmentationSettings:
    """Thresholds and windows of the client segmentation (defaults documented in the module docstring)."""

    analysis_months: int = 12
    abc_a_share: float = 0.80
    abc_b_share: float = 0.95
    xyz_x_max_cv: float = 0.5
    xyz_y_max_cv: float = 1.0
    growth_band: float = 0.10
    activity_hours_without_duration: dict[str, float] = field(default_factory=_default_activity_hours)
    default_activity_hours: float = 0.25
    high_effort_quantile: float = 0.75
    low_return_quantile: float = 0.25
    headroom_quantile: float = 0.75
    min_peer_clients: int = 5
    high_discount_ratio: float = 1.25
    low_discount_ratio: float = 0.75


# --------------------------------------------------------------------------------------------- helpers


def month_index(column: str | pl.Expr) -> pl.Expr:
    """Months since year 0 (year * 12 + month - 1): consecutive months differ by one."""
    col = pl.col(column) if isinstance(column, str) else column
    return col.dt.year().cast(pl.Int64) * 12 + col.dt.month().cast(pl.Int64) - 1


def month_of_index(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def analysis_window(as_of: date, months: int) -> tuple[date, date]:
    """First and last month (first days) of the `months` complete months before the as-of month."""
    if months < 2:
        raise ValueError(f"analysis_months must be at least 2 (got {months}): XYZ needs a spread")
    last = as_of.year * 12 + as_of.month - 2
    return month_of_index(last - months + 1), month_of_index(last)


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def with_abc_class(
    frame: pl.LazyFrame, value: str, prefix: str, a_share: float, b_share: float, key: str = "client_id"
) -> pl.LazyFrame:
    """Add `<prefix>_cumulative_share` and `<prefix>_class` (A/B/C) ranking rows of `frame` by `value`."""
    if not 0 < a_share < b_share <= 1:
        raise ValueError(f"ABC thresholds must satisfy 0 < A < B <= 1 (got {a_share}, {b_share})")
    positive = pl.col(value).clip(lower_bound=0)
    cumulative = _ratio(positive.cum_sum(), positive.sum())
    # A hair of tolerance: float cumulative sums must not push a client exactly on the line into B.
    eps = 1e-12
    return (
        frame.sort([value, key], descending=[True, False], nulls_last=True)
        .with_columns(cumulative.alias(f"{prefix}_cumulative_share"))
        .with_columns(
            pl.when(pl.col(value).fill_null(0) <= 0)
            .then(pl.lit("C"))
            .when(pl.col(f"{prefix}_cumulative_share") <= a_share + eps)
            .then(pl.lit("A"))
            .when(pl.col(f"{prefix}_cumulative_share") <= b_share + eps)
            .then(pl.lit("B"))
            .otherwise(pl.lit("C"))
            .alias(f"{prefix}_class")
        )
    )


def xyz_class(cv: str, x_max_cv: float, y_max_cv: float) -> pl.Expr:
    """X / Y / Z by the coefficient of variation; a client without a CV (no turnover) is Z."""
    if not 0 < x_max_cv < y_max_cv:
        raise ValueError(f"XYZ thresholds must satisfy 0 < X < Y (got {x_max_cv}, {y_max_cv})")
    return (
        pl.when(pl.col(cv).is_null())
        .then(pl.lit("Z"))
        .when(pl.col(cv) <= x_max_cv)
        .then(pl.lit("X"))
        .when(pl.col(cv) <= y_max_cv)
        .then(pl.lit("Y"))
        .otherwise(pl.lit("Z"))
    )


def quintile_score(value: pl.Expr, higher_is_better: bool, eligible: pl.Expr) -> pl.Expr:
    """1-5 by quintile among eligible rows (ties share the lower score), 0 for the others."""
    ranked = pl.when(eligible).then(value if higher_is_better else -value).rank("min")
    count = eligible.sum()
    score = 1 + ((ranked - 1) * 5 // count).cast(pl.Int64)
    return pl.when(eligible).then(score.clip(1, 5)).otherwise(0).cast(pl.Int8)


def discount_depth(net: pl.Expr, listed: pl.Expr) -> pl.Expr:
    """1 - net / list value (a list-value weighted discount depth)."""
    return _ratio(listed - net, listed)


def price_sensitivity_class(
    depth: pl.Expr, book_depth: pl.Expr, high_ratio: float, low_ratio: float
) -> pl.Expr:
    return (
        pl.when(depth.is_null())
        .then(pl.lit(UNKNOWN))
        .when(depth >= book_depth * high_ratio)
        .then(pl.lit("high"))
        .when(depth <= book_depth * low_ratio)
        .then(pl.lit("low"))
        .otherwise(pl.lit("medium"))
    )


# --------------------------------------------------------------------------------------------- pieces


def client_dimensions(clients: pl.LazyFrame) -> pl.LazyFrame:
    """Client attributes used for grouping, unknown instead of empty."""
    return clients.select(
        "client_id",
        *[pl.col(c).fill_null(UNKNOWN) for c in ("industry", "use_case", "segment", "revenue_band")],
        pl.col("is_deleted").fill_null(False),
        pl.col("merged_into_client_id").is_not_null().alias("is_merged"),
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def effort_hours_sql(settings: SegmentationSettings) -> str:
    """`effort_hours` as a SQL expression over `duration_minutes` and `activity_type`."""
    by_type = " ".join(
        f"when {_sql_string(kind)} then cast({float(hours)!r} as double)"
        for kind, hours in settings.activity_hours_without_duration.items()
    )
    default = f"cast({float(settings.default_activity_hours)!r} as double)"
    return (
        "case when duration_minutes is not null and duration_minutes > 0 "
        "then cast(duration_minutes as double) / 60 "
        f"else {f'case activity_type {by_type} else {default} end' if by_type else default} end"
    )


def growth_trend(first_half: str, second_half: str, band: float) -> pl.Expr:
    first, second = pl.col(first_half), pl.col(second_half)
    growth = _ratio(second - first, first)
    return (
        pl.when((first <= 0) & (second <= 0))
        .then(pl.lit("inactive"))
        .when(first <= 0)
        .then(pl.lit("new"))
        .when(growth > band)
        .then(pl.lit("growing"))
        .when(growth < -band)
        .then(pl.lit("declining"))
        .otherwise(pl.lit("stable"))
    )


# --------------------------------------------------------------------------------------------- SQL

CLIENT_SOURCES = ("dim_clients", "turnover", "lines", "activities")
"""The inputs, read by SQL (`transforms.sql.Tables`): marts.dim_clients, marts.fct_client_turnover,
intermediate.int_invoice_lines_converted, staging.stg_crm__activities. Only their per-client aggregates
come to Polars."""


def _month_index_sql(column: str) -> str:
    return f"(year({column}) * 12 + month({column}) - 1)"


def client_turnover_profile_sql(first_month: date, last_month: date, as_of: date) -> str:
    """Per client of `{turnover}` (months up to the as-of month): lifetime and window totals, XYZ
    statistics, half-window trend, RFM inputs. Sums of the DECIMAL amounts are exact, then DOUBLE;
    clients without turnover rows are absent (the caller fills their zeros)."""
    first_i = first_month.year * 12 + first_month.month - 1
    last_i = last_month.year * 12 + last_month.month - 1
    months = last_i - first_i + 1
    half = first_i + months // 2
    as_of_i = as_of.year * 12 + as_of.month - 1
    return f"""
        with rows as (
            select client_id, {_month_index_sql("turnover_month")} as month_i, net_revenue_reporting as net,
                margin_reporting as margin, cast(net_revenue_reporting as double) as net_double,
                invoice_count, last_invoice_date
            from {{turnover}}
            where {_month_index_sql("turnover_month")} <= {as_of_i}
        ),
        sums as (
            select client_id,
                cast(sum(net) as double) as lifetime_turnover_reporting,
                cast(sum(margin) as double) as lifetime_margin_reporting,
                cast(coalesce(sum(net) filter (where month_i between {first_i} and {last_i}), 0) as double)
                    as turnover_reporting,
                cast(coalesce(sum(margin) filter (where month_i between {first_i} and {last_i}), 0) as double)
                    as margin_reporting,
                count(*) filter (where month_i between {first_i} and {last_i} and net <> 0) as active_months,
                coalesce(
                    fsum(net_double * net_double) filter (where month_i between {first_i} and {last_i}), 0
                ) as net_squares,
                cast(coalesce(sum(invoice_count) filter (where month_i between {first_i} and {last_i}), 0)
                    as bigint) as invoice_count,
                max(last_invoice_date) filter (where last_invoice_date <= {date_literal(as_of)})
                    as last_invoice_date,
                cast(coalesce(sum(net) filter (where month_i between {first_i} and {half - 1}), 0) as double)
                    as turnover_first_half_reporting,
                cast(coalesce(sum(net) filter (where month_i between {half} and {last_i}), 0) as double)
                    as turnover_second_half_reporting
            from rows
            group by client_id
        )
        select * exclude (net_squares, variance),
            case when monthly_turnover_mean_reporting > 0
                then sqrt(variance) / monthly_turnover_mean_reporting end as monthly_turnover_cv
        from (
            select *,
                -- Population variance over all window months, zero months included: E[x^2] - E[x]^2.
                greatest(net_squares / {months} - monthly_turnover_mean_reporting ** 2, 0) as variance
            from (select *, turnover_reporting / {months} as monthly_turnover_mean_reporting from sums)
        )
    """


def client_discounts_sql(as_of: date) -> str:
    """Net and list value of each client's invoice lines (`{lines}`) up to the as-of date (credit notes
    aside)."""
    return f"""
        select client_id, cast(sum(net_amount_reporting) as double) as _net_value,
            cast(sum(list_amount_reporting) as double) as _list_value
        from {{lines}}
        where not coalesce(is_credit_note, false) and issue_date <= {date_literal(as_of)}
        group by client_id
    """


def client_effort_sql(
    first_month: date, last_month: date, as_of: date, settings: SegmentationSettings
) -> str:
    """Effort per client over the window (`{activities}`): hours (`effort_hours_sql`), activity count,
    activities counted without duration."""
    first_i = first_month.year * 12 + first_month.month - 1
    last_i = last_month.year * 12 + last_month.month - 1
    day = "cast(occurred_at as date)"
    return f"""
        select client_id, fsum({effort_hours_sql(settings)}) as effort_hours, count(*) as activity_count,
            count(*) filter (where duration_minutes is null or duration_minutes <= 0)
                as activities_without_duration
        from {{activities}}
        where client_id is not null and {day} <= {date_literal(as_of)}
            and {_month_index_sql(day)} between {first_i} and {last_i}
        group by client_id
    """


# --------------------------------------------------------------------------------------------- result


def client_segments(
    clients: pl.LazyFrame,
    turnover: pl.LazyFrame,
    lines: pl.LazyFrame,
    activities: pl.LazyFrame,
    as_of: date,
    settings: SegmentationSettings | None = None,
) -> pl.LazyFrame:
    """One row per client of `dim_clients`: ABC, XYZ, RFM, trend, effort, headroom, price sensitivity.

    Inputs: `marts.dim_clients`, `marts.fct_client_turnover`, `intermediate.int_invoice_lines_converted`,
    `staging.stg_crm__activities` (column subsets are enough; see the SQL).
    """
    sources = {"dim_clients": clients, "turnover": turnover, "lines": lines, "activities": activities}
    with frame_tables(sources) as t:
        return client_segments_from_tables(t, as_of, settings)


def client_segments_from_tables(
    t: Tables, as_of: date, settings: SegmentationSettings | None = None
) -> pl.LazyFrame:
    """`client_segments` with `CLIENT_SOURCES` bound in `t`: per-client aggregates in DuckDB, the classes,
    scores and peer figures in Polars."""
    s = settings or SegmentationSettings()
    first_month, last_month = analysis_window(as_of, s.analysis_months)
    dims = client_dimensions(
        t.frame(
            "select client_id, industry, use_case, segment, revenue_band, is_deleted, merged_into_client_id "
            "from {dim_clients}"
        ).lazy()
    )
    zero_float = [
        "lifetime_turnover_reporting",
        "lifetime_margin_reporting",
        "turnover_reporting",
        "margin_reporting",
        "monthly_turnover_mean_reporting",
        "turnover_first_half_reporting",
        "turnover_second_half_reporting",
    ]
    profile = (
        dims.select("client_id")
        .join(
            t.frame(client_turnover_profile_sql(first_month, last_month, as_of)).lazy(),
            on="client_id",
            how="left",
        )
        .with_columns(
            *[pl.col(c).fill_null(0.0) for c in zero_float],
            pl.col("active_months").fill_null(0),
            pl.col("invoice_count").fill_null(0),
        )
    )
    discounts = t.frame(client_discounts_sql(as_of)).lazy()
    effort = t.frame(client_effort_sql(first_month, last_month, as_of, s)).lazy()
    book_depth = discount_depth(pl.col("_net_value").sum(), pl.col("_list_value").sum())
    invoiced = pl.col("last_invoice_date").is_not_null()
    effort_pool = pl.col("effort_hours") > 0
    peer_keys = ["segment", "revenue_band"]
    active = pl.col("turnover_reporting") > 0
    peer_turnover = pl.col("turnover_reporting").filter(active)

    segments = (
        dims.join(profile, on="client_id", how="left")
        .join(effort, on="client_id", how="left")
        .join(discounts, on="client_id", how="left")
        .with_columns(
            pl.col("effort_hours").fill_null(0.0),
            pl.col("activity_count").fill_null(0),
            pl.col("activities_without_duration").fill_null(0),
            pl.lit(first_month).alias("window_start_month"),
            pl.lit(last_month).alias("window_end_month"),
            pl.lit(as_of).alias("as_of_date"),
        )
    )
    segments = with_abc_class(segments, "turnover_reporting", "abc_turnover", s.abc_a_share, s.abc_b_share)
    segments = with_abc_class(segments, "margin_reporting", "abc_margin", s.abc_a_share, s.abc_b_share)
    return (
        segments.with_columns(
            xyz_class("monthly_turnover_cv", s.xyz_x_max_cv, s.xyz_y_max_cv).alias("xyz_class"),
            (pl.lit(as_of) - pl.col("last_invoice_date"))
            .dt.total_days()
            .cast(pl.Int64)
            .alias("recency_days"),
            quintile_score(
                (pl.lit(as_of) - pl.col("last_invoice_date")).dt.total_days(), False, invoiced
            ).alias("recency_score"),
            quintile_score(pl.col("invoice_count"), True, invoiced).alias("frequency_score"),
            quintile_score(pl.col("turnover_reporting"), True, invoiced).alias("monetary_score"),
            _ratio(
                pl.col("turnover_second_half_reporting") - pl.col("turnover_first_half_reporting"),
                pl.col("turnover_first_half_reporting"),
            ).alias("turnover_growth"),
            growth_trend(
                "turnover_first_half_reporting", "turnover_second_half_reporting", s.growth_band
            ).alias("growth_trend"),
            _ratio(pl.col("margin_reporting"), pl.col("effort_hours")).alias("margin_per_effort_hour"),
            # Peers: segment x revenue band when the band has enough active clients, else the segment.
            active.sum().over(peer_keys).cast(pl.Int64).alias("_band_peers"),
            peer_turnover.quantile(s.headroom_quantile, "linear").over(peer_keys).alias("_band_benchmark"),
            active.sum().over("segment").cast(pl.Int64).alias("_segment_peers"),
            peer_turnover.quantile(s.headroom_quantile, "linear").over("segment").alias("_segment_benchmark"),
            discount_depth(pl.col("_net_value"), pl.col("_list_value")).alias("discount_depth"),
            book_depth.alias("_book_depth"),
        )
        .with_columns(
            pl.col("effort_hours")
            .filter(effort_pool)
            .quantile(s.high_effort_quantile, "linear")
            .alias("_high_effort_line"),
            pl.col("margin_per_effort_hour")
            .filter(effort_pool)
            .quantile(s.low_return_quantile, "linear")
            .alias("_low_return_line"),
            (pl.col("abc_turnover_class") + pl.col("xyz_class")).alias("abc_xyz_class"),
            pl.concat_str(pl.col("recency_score"), pl.col("frequency_score"), pl.col("monetary_score")).alias(
                "rfm_score"
            ),
            pl.when(pl.col("_band_peers") >= s.min_peer_clients)
            .then(pl.concat_str(pl.col("segment"), pl.lit(" / "), pl.col("revenue_band")))
            .otherwise(pl.col("segment"))
            .alias("peer_group"),
            pl.when(pl.col("_band_peers") >= s.min_peer_clients)
            .then(pl.col("_band_peers"))
            .otherwise(pl.col("_segment_peers"))
            .alias("peer_client_count"),
            pl.when(pl.col("_band_peers") >= s.min_peer_clients)
            .then(pl.col("_band_benchmark"))
            .otherwise(pl.col("_segment_benchmark"))
            .alias("peer_benchmark_turnover_reporting"),
            price_sensitivity_class(
                pl.col("discount_depth"), pl.col("_book_depth"), s.high_discount_ratio, s.low_discount_ratio
            ).alias("price_sensitivity_class"),
        )
        .with_columns(
            (
                effort_pool
                & (pl.col("effort_hours") >= pl.col("_high_effort_line"))
                & (pl.col("margin_per_effort_hour") <= pl.col("_low_return_line"))
            ).alias("is_high_effort_low_return"),
            pl.when(pl.col("is_deleted") | pl.col("is_merged"))
            .then(0.0)
            .otherwise(
                (pl.col("peer_benchmark_turnover_reporting") - pl.col("turnover_reporting")).clip(
                    lower_bound=0
                )
            )
            .fill_null(0.0)
            .alias("headroom_reporting"),
        )
        .select(CLIENT_SEGMENT_COLUMNS)
        .sort("client_id")
    )


CLIENT_SEGMENT_COLUMNS = [
    "client_id",
    "industry",
    "use_case",
    "segment",
    "revenue_band",
    "is_deleted",
    "as_of_date",
    "window_start_month",
    "window_end_month",
    "lifetime_turnover_reporting",
    "lifetime_margin_reporting",
    "turnover_reporting",
    "margin_reporting",
    "abc_turnover_cumulative_share",
    "abc_turnover_class",
    "abc_margin_cumulative_share",
    "abc_margin_class",
    "active_months",
    "monthly_turnover_mean_reporting",
    "monthly_turnover_cv",
    "xyz_class",
    "abc_xyz_class",
    "last_invoice_date",
    "recency_days",
    "invoice_count",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "rfm_score",
    "turnover_first_half_reporting",
    "turnover_second_half_reporting",
    "turnover_growth",
    "growth_trend",
    "effort_hours",
    "activity_count",
    "activities_without_duration",
    "margin_per_effort_hour",
    "is_high_effort_low_return",
    "peer_group",
    "peer_client_count",
    "peer_benchmark_turnover_reporting",
    "headroom_reporting",
    "discount_depth",
    "price_sensitivity_class",
]
