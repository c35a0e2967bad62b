"""Segment scorecard (`marts.segment_scorecard`): turnover and margin shares, classes, funnel conversion,
price sensitivity, crisis resilience, potential and a focus rank per segment.

Definitions (see `docs/client_base.md` for the reasons):

- **Groupings.** One row per value of each grouping in `GROUPINGS`: the niche `industry_use_case`
  (industry profile x use case, the grouping the focus rank is meant for), then `industry`, `use_case`,
  sales `segment`, `business_line`, and one `total` row. Shares sum to one within a grouping.
- **Turnover by business line.** An invoice line belongs to the business line of its deal; a line
  without a known deal takes the business line that carries most of its product category's attributed
  turnover (learned from the data), else `unattributed`. Every grouping's turnover and margin therefore
  add up to `fct_client_turnover`.
- **Funnel** over the analysis window of `client_segments`: deals created (lead inflow), win rate =
  won / (won + lost) of deals closed in the window, average won deal (EUR), revenue per lead = win rate x
  average won deal, leads per million EUR won.
- **Price sensitivity.** Discount depth = 1 - net / list value of invoice lines (credit notes aside),
  with a standard error clustered by client (linearised ratio). Price elasticity: per won deal, the list
  value of its first invoice (a quantity index: quantities of different products priced at list) against
  the deal's price level 1 - discount; `log volume = a[line x segment] - elasticity x log(1 - discount)`,
  fixed effects per business line x sales segment (deal sizes differ there), standard error clustered by
  client, 95 % interval = +-1.96 SE. Class: high when the estimate is above `elastic_threshold` (by
  default the whole book's elasticity, so "more price-sensitive than our average client"), low otherwise,
  unknown with fewer than `min_elasticity_deals` deals; `price_sensitivity_confidence` says whether the
  interval excludes the threshold (at a few hundred deals per segment it often does not).
- **Crisis resilience.** Crisis window and baseline (same months a year before) are configured or, by
  default, detected: the `crisis_months`-long window of complete months whose total lead inflow (deals
  created) fell most against the same months a year before. Per row: relative change of turnover, lead
  inflow and win rate; `resilience_change` is their mean, and the resilience score the mean of their
  percentile ranks within the grouping (robust to one lumpy contract), ranked (1 = held best).
- **Potential**: the clients' headroom (from `client_segments`), and headroom / window turnover.
- **Focus rank** within a grouping: weighted mean of the percentile ranks of revenue per lead, headroom
  and resilience score (weights configurable); 1 = where a lead is worth most. Beside it the current
  share of lead inflow, to show how today's mix differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from transforms.client_base import UNKNOWN, _ratio, discount_depth, month_index, month_of_index

GROUPINGS: dict[str, tuple[str, ...]] = {
    "industry_use_case": ("industry", "use_case"),
    "industry": ("industry",),
    "use_case": ("use_case",),
    "segment": ("segment",),
    "business_line": ("business_line",),
    "total": (),
}
DIMENSIONS = ("industry", "use_case", "segment", "business_line")
UNATTRIBUTED = "unattributed"
TOTAL_LABEL = "(all)"
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ScorecardSettings:
    """Crisis window, price-sensitivity and focus settings (defaults documented in the module docstring)."""

    crisis_start: date | None = None
    crisis_end: date | None = None
    crisis_months: int = 6
    elastic_threshold: float | None = None
    """Elasticity above which a segment is price-sensitive; None = the whole book's elasticity."""
    min_elasticity_deals: int = 30
    focus_weight_revenue_per_lead: float = 0.5
    focus_weight_potential: float = 0.25
    focus_weight_resilience: float = 0.25


# --------------------------------------------------------------------------------------------- crisis


def _shift_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return month_of_index(index)


def _month_end(first_day: date) -> date:
    from datetime import timedelta

    return _shift_months(first_day, 1) - timedelta(days=1)


def crisis_window(
    deals: pl.LazyFrame, as_of: date, settings: ScorecardSettings | None = None
) -> pl.LazyFrame:
    """One row: crisis_start, crisis_end, baseline_start, baseline_end, inflow change, and how it was chosen.

    Configured dates win (baseline = the same days a year before). Otherwise the window of
    `crisis_months` complete months with the steepest fall of deals created against the same months a
    year before, among windows whose baseline lies inside the history (its first month, often partial,
    left out); no row values when the history is too short.
    """
    s = settings or ScorecardSettings()
    if (s.crisis_start is None) != (s.crisis_end is None):
        raise ValueError("configure both crisis_start and crisis_end, or neither")
    columns = {
        "crisis_start": pl.Date,
        "crisis_end": pl.Date,
        "baseline_start": pl.Date,
        "baseline_end": pl.Date,
        "crisis_inflow_change": pl.Float64,
        "crisis_window_method": pl.String,
    }
    if s.crisis_start is not None and s.crisis_end is not None:
        if s.crisis_end < s.crisis_start:
            raise ValueError(f"crisis_end {s.crisis_end} is before crisis_start {s.crisis_start}")
        start, end = s.crisis_start, s.crisis_end
        return pl.LazyFrame(
            {
                "crisis_start": [start],
                "crisis_end": [end],
                "baseline_start": [start.replace(year=start.year - 1)],
                "baseline_end": [end.replace(year=end.year - 1)],
                "crisis_inflow_change": [None],
                "crisis_window_method": ["configured"],
            },
            schema=columns,
        )
    n = s.crisis_months
    last_complete = as_of.year * 12 + as_of.month - 2
    monthly = (
        deals.filter(pl.col("created_at").dt.date() <= as_of)
        .group_by(month_index(pl.col("created_at").dt.date()).alias("month"))
        .agg(pl.len().cast(pl.Float64).alias("created"))
        .collect()
    )
    if monthly.is_empty():
        return pl.LazyFrame(schema=columns)
    first_full = int(monthly["month"].min()) + 1
    counts = dict(zip(monthly["month"].to_list(), monthly["created"].to_list(), strict=True))
    candidates = []
    for start_i in range(first_full + 12, last_complete - n + 2):
        crisis = sum(counts.get(m, 0.0) for m in range(start_i, start_i + n))
        base = sum(counts.get(m, 0.0) for m in range(start_i - 12, start_i - 12 + n))
        if base > 0:
            candidates.append((crisis / base - 1.0, start_i))
    if not candidates:
        return pl.LazyFrame(schema=columns)
    change, start_i = min(candidates)
    start = month_of_index(start_i)
    end = _month_end(month_of_index(start_i + n - 1))
    return pl.LazyFrame(
        {
            "crisis_start": [start],
            "crisis_end": [end],
            "baseline_start": [month_of_index(start_i - 12)],
            "baseline_end": [_month_end(month_of_index(start_i + n - 13))],
            "crisis_inflow_change": [change],
            "crisis_window_method": [
                f"detected: the {n} complete months with the steepest fall of deals created against the "
                f"same months a year before ({change:+.1%})"
            ],
        },
        schema=columns,
    )


# --------------------------------------------------------------------------------------------- facts


def attribute_business_line(lines: pl.LazyFrame, deals: pl.LazyFrame) -> pl.LazyFrame:
    """Invoice lines with a `business_line`: the deal's, else the category's main line, else unattributed."""
    with_deal = lines.join(
        deals.select("deal_id", pl.col("business_line").alias("_deal_line")), on="deal_id", how="left"
    )
    category_line = (
        with_deal.filter(pl.col("_deal_line").is_not_null())
        .group_by("product_category", "_deal_line")
        .agg(pl.col("net_amount_reporting").cast(pl.Float64).abs().sum().alias("_value"))
        .sort(["product_category", "_value", "_deal_line"], descending=[False, True, False])
        .group_by("product_category", maintain_order=True)
        .agg(pl.col("_deal_line").first().alias("_category_line"))
    )
    return (
        with_deal.join(category_line, on="product_category", how="left")
        .with_columns(
            pl.coalesce("_deal_line", "_category_line", pl.lit(UNATTRIBUTED)).alias("business_line")
        )
        .drop("_deal_line", "_category_line")
    )


def _with_client_dims(frame: pl.LazyFrame, segments: pl.LazyFrame) -> pl.LazyFrame:
    dims = segments.select("client_id", "industry", "use_case", "segment")
    return frame.join(dims, on="client_id", how="left").with_columns(
        *[pl.col(c).fill_null(UNKNOWN) for c in ("industry", "use_case", "segment")]
    )


def price_observations(lines: pl.LazyFrame, deals: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """One row per won deal with an invoice: list value and price level of its first invoice (EUR)."""
    return (
        lines.filter(
            ~pl.col("is_credit_note").fill_null(False)
            & pl.col("deal_id").is_not_null()
            & (pl.col("issue_date") <= as_of)
        )
        .filter(pl.col("issue_date") == pl.col("issue_date").min().over("deal_id"))
        .group_by("deal_id")
        .agg(
            pl.col("client_id").first(),
            pl.col("net_amount_reporting").cast(pl.Float64).sum().alias("net_value"),
            pl.col("list_amount_reporting").cast(pl.Float64).sum().alias("list_value"),
        )
        .join(deals.select("deal_id", "business_line"), on="deal_id", how="inner")
        .filter((pl.col("net_value") > 0) & (pl.col("list_value") > 0))
        .select(
            "deal_id",
            "client_id",
            "business_line",
            pl.col("list_value").log().alias("log_volume"),
            (pl.col("net_value") / pl.col("list_value")).log().alias("log_price_level"),
        )
    )


# --------------------------------------------------------------------------------------------- estimates


def price_elasticity(observations: pl.LazyFrame, keys: list[str], fixed_effects: list[str]) -> pl.LazyFrame:
    """Elasticity of volume to price level per `keys` group, with a client-clustered standard error.

    `observations` holds log_volume, log_price_level, client_id, the keys and the fixed-effect columns.
    The slope of log_volume on log_price_level after removing the fixed-effect means (Frisch-Waugh), so
    elasticity = -slope; variance = G/(G-1) x sum over clients of (sum x r)^2 / (sum x^2)^2.
    """
    cells = [*keys, *fixed_effects]
    centred = observations.with_columns(
        (pl.col("log_volume") - pl.col("log_volume").mean().over(cells)).alias("_y"),
        (pl.col("log_price_level") - pl.col("log_price_level").mean().over(cells)).alias("_x"),
    ).with_columns(
        (pl.col("_x") * pl.col("_y")).sum().over(keys or pl.lit(1)).alias("_sxy"),
        (pl.col("_x") ** 2).sum().over(keys or pl.lit(1)).alias("_sxx"),
    )
    by_client = (
        centred.with_columns(_ratio(pl.col("_sxy"), pl.col("_sxx")).alias("_slope"))
        .with_columns((pl.col("_x") * (pl.col("_y") - pl.col("_slope") * pl.col("_x"))).alias("_score"))
        .group_by([*keys, "client_id"])
        .agg(pl.col("_score").sum(), pl.col("_slope").first(), pl.col("_sxx").first(), pl.len().alias("_n"))
    )
    clusters = pl.len().cast(pl.Float64)
    variance = clusters / (clusters - 1) * (pl.col("_score") ** 2).sum() / pl.col("_sxx").first() ** 2
    grouped = by_client.group_by(keys) if keys else by_client.group_by(pl.lit(1).alias("_all"))
    result = grouped.agg(
        (-pl.col("_slope").first()).alias("price_elasticity"),
        pl.when(clusters > 1).then(variance.sqrt()).otherwise(None).alias("price_elasticity_se"),
        pl.col("_n").sum().cast(pl.Int64).alias("elasticity_deal_count"),
    ).with_columns(
        (pl.col("price_elasticity") - _Z95 * pl.col("price_elasticity_se")).alias("price_elasticity_low"),
        (pl.col("price_elasticity") + _Z95 * pl.col("price_elasticity_se")).alias("price_elasticity_high"),
    )
    return result if keys else result.drop("_all")


def discount_depth_estimate(lines: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Discount depth 1 - net / list per group with a client-clustered standard error (linearised ratio)."""
    per_client = lines.group_by([*keys, "client_id"]).agg(
        pl.col("net_amount_reporting").cast(pl.Float64).sum().alias("_net"),
        pl.col("list_amount_reporting").cast(pl.Float64).sum().alias("_list"),
    )
    depth = discount_depth(pl.col("_net").sum(), pl.col("_list").sum())
    clusters = pl.len().cast(pl.Float64)
    grouped = per_client.group_by(keys) if keys else per_client.group_by(pl.lit(1).alias("_all"))
    result = grouped.agg(
        depth.alias("discount_depth"),
        (
            clusters
            / (clusters - 1)
            * ((pl.col("_list") - pl.col("_net") - depth * pl.col("_list")) ** 2).sum()
            / pl.col("_list").sum() ** 2
        )
        .sqrt()
        .alias("discount_depth_se"),
    ).with_columns(
        pl.when(pl.col("discount_depth_se").is_finite())
        .then(pl.col("discount_depth_se"))
        .alias("discount_depth_se")
    )
    return result if keys else result.drop("_all")


# --------------------------------------------------------------------------------------------- scorecard


def _in_range(column: pl.Expr, start: pl.Expr, end: pl.Expr) -> pl.Expr:
    return column.is_not_null() & (column >= start) & (column <= end)


def _grouping_frame(
    name: str,
    keys: tuple[str, ...],
    facts: dict[str, pl.LazyFrame],
    window: dict[str, date | None],
) -> pl.LazyFrame:
    # The total row groups by a constant column, so every grouping takes the same path.
    k = list(keys) or ["_all"]
    facts = {n: f.with_columns(pl.lit(TOTAL_LABEL).alias("_all")) for n, f in facts.items()}
    win_start, win_end = pl.lit(window["window_start_month"]), pl.lit(window["window_end_month"])
    win_end_day = pl.lit(_month_end(window["window_end_month"]))
    crisis_start, crisis_end = pl.lit(window["crisis_start"], pl.Date), pl.lit(window["crisis_end"], pl.Date)
    base_start, base_end = pl.lit(window["baseline_start"], pl.Date), pl.lit(window["baseline_end"], pl.Date)

    # Month facts are first days of months; a month is in a period when its first day is.
    month = pl.col("turnover_month")
    turnover = (
        facts["monthly"]
        .group_by(k)
        .agg(
            pl.col("net").sum().alias("lifetime_turnover_reporting"),
            pl.col("margin").sum().alias("lifetime_margin_reporting"),
            pl.col("net").filter(_in_range(month, win_start, win_end)).sum().alias("turnover_reporting"),
            pl.col("margin").filter(_in_range(month, win_start, win_end)).sum().alias("margin_reporting"),
            pl.col("net").filter(_in_range(month, crisis_start, crisis_end)).sum().alias("_crisis_turnover"),
            pl.col("net").filter(_in_range(month, base_start, base_end)).sum().alias("_baseline_turnover"),
        )
    )
    members = facts["members_by_line"] if "business_line" in keys else facts["members"]
    counts = members.group_by(k).agg(
        pl.col("client_id").n_unique().cast(pl.Int64).alias("client_count"),
        (pl.col("turnover_reporting") > 0).sum().cast(pl.Int64).alias("active_client_count"),
        *[
            (pl.col(column) == value).sum().cast(pl.Int64).alias(f"{prefix}_{value.lower()}_client_count")
            for column, prefix, values in (
                ("abc_turnover_class", "abc_turnover", "ABC"),
                ("abc_margin_class", "abc_margin", "ABC"),
                ("xyz_class", "xyz", "XYZ"),
            )
            for value in values
        ],
        pl.col("is_high_effort_low_return").sum().cast(pl.Int64).alias("high_effort_low_return_client_count"),
        pl.col("headroom_reporting").sum().alias("headroom_reporting"),
    )
    created = pl.col("created_at").dt.date()
    closed = pl.coalesce(pl.col("won_at"), pl.col("lost_at")).dt.date()
    is_won, is_lost = pl.col("status") == "won", pl.col("status") == "lost"

    def closed_in(start: pl.Expr, end: pl.Expr, outcome: pl.Expr) -> pl.Expr:
        return (_in_range(closed, start, end) & outcome).sum()

    funnel = (
        facts["deals"]
        .group_by(k)
        .agg(
            _in_range(created, win_start, win_end_day).sum().cast(pl.Int64).alias("deals_created"),
            closed_in(win_start, win_end_day, is_won).cast(pl.Int64).alias("deals_won"),
            closed_in(win_start, win_end_day, is_lost).cast(pl.Int64).alias("deals_lost"),
            pl.col("amount_reporting")
            .cast(pl.Float64)
            .filter(_in_range(closed, win_start, win_end_day) & is_won)
            .mean()
            .alias("average_won_deal_reporting"),
            _in_range(created, crisis_start, crisis_end).sum().alias("_crisis_created"),
            _in_range(created, base_start, base_end).sum().alias("_baseline_created"),
            _ratio(
                closed_in(crisis_start, crisis_end, is_won),
                closed_in(crisis_start, crisis_end, is_won | is_lost),
            ).alias("crisis_win_rate"),
            _ratio(
                closed_in(base_start, base_end, is_won), closed_in(base_start, base_end, is_won | is_lost)
            ).alias("baseline_win_rate"),
        )
    )
    return (
        turnover.join(counts, on=k, how="full", coalesce=True)
        .join(funnel, on=k, how="full", coalesce=True)
        .join(discount_depth_estimate(facts["price_lines"], k), on=k, how="left")
        .join(price_elasticity(facts["observations"], k, ["business_line", "segment"]), on=k, how="left")
        .with_columns(
            pl.lit(name).alias("grouping"),
            (
                pl.concat_str([pl.col(c) for c in keys], separator=" / ") if keys else pl.lit(TOTAL_LABEL)
            ).alias("segment_label"),
            *[pl.lit(None, pl.String).alias(c) for c in DIMENSIONS if c not in keys],
        )
    )


def _window(segments: pl.LazyFrame, crisis: pl.LazyFrame) -> dict[str, date | None]:
    """The analysis window of the segmentation and the crisis window, as plain values."""
    analysis = segments.select("window_start_month", "window_end_month").unique().collect()
    if analysis.height != 1:
        raise ValueError(f"client_segments must have one analysis window, found {analysis.height}")
    crisis_rows = crisis.collect()
    crisis_row = (
        crisis_rows.row(0, named=True)
        if crisis_rows.height
        else dict.fromkeys(crisis_rows.columns) | {"crisis_window_method": "none: history too short"}
    )
    return analysis.row(0, named=True) | crisis_row


def segment_scorecard(
    segments: pl.LazyFrame,
    lines: pl.LazyFrame,
    deals: pl.LazyFrame,
    crisis: pl.LazyFrame,
    as_of: date,
    settings: ScorecardSettings | None = None,
) -> pl.LazyFrame:
    """One row per grouping x segment (see `GROUPINGS`).

    Inputs: `marts.client_segments` (the output of `client_segments`, whose analysis window is used),
    invoice lines (`intermediate.int_invoice_lines_converted`), `marts.dim_deals`, and the one-row
    `crisis_window` frame.
    """
    s = settings or ScorecardSettings()
    as_of_month = as_of.replace(day=1)
    attributed = _with_client_dims(attribute_business_line(lines, deals), segments)
    monthly = (
        attributed.filter(pl.col("turnover_month") <= as_of_month)
        .group_by("client_id", "industry", "use_case", "segment", "business_line", "turnover_month")
        .agg(
            pl.col("net_amount_reporting").cast(pl.Float64).sum().alias("net"),
            pl.col("margin_reporting").cast(pl.Float64).sum().alias("margin"),
        )
    )
    client_lines = monthly.select("client_id", "business_line").unique()
    segment_rows = segments.drop("business_line", strict=False)
    deal_facts = _with_client_dims(deals.filter(pl.col("created_at").dt.date() <= as_of), segments)
    price_lines = attributed.filter(
        ~pl.col("is_credit_note").fill_null(False) & (pl.col("issue_date") <= as_of)
    )
    observations = _with_client_dims(price_observations(lines, deals, as_of), segments)
    window = _window(segments, crisis)
    facts = {
        "monthly": monthly,
        "members": segment_rows,
        "members_by_line": segment_rows.join(client_lines, on="client_id", how="inner"),
        "deals": deal_facts,
        "price_lines": price_lines,
        "observations": observations,
    }
    frames = [_grouping_frame(name, keys, facts, window) for name, keys in GROUPINGS.items()]
    w = window
    threshold = s.elastic_threshold
    if threshold is None:
        book = price_elasticity(
            observations.with_columns(pl.lit(TOTAL_LABEL).alias("_all")),
            ["_all"],
            ["business_line", "segment"],
        ).collect()
        estimate = book["price_elasticity"][0] if book.height else None
        threshold = estimate if estimate is not None else 1.0
    weights = (s.focus_weight_revenue_per_lead, s.focus_weight_potential, s.focus_weight_resilience)
    pct = lambda column: (pl.col(column).rank("average") / pl.col(column).count()).over("grouping")  # noqa: E731
    resilience_parts = ["turnover_change", "lead_inflow_change", "win_rate_change"]
    # Ranks, not raw changes: one lumpy new contract must not outweigh a steady fall in leads and wins.
    resilience_score = pl.mean_horizontal([pct(c) for c in resilience_parts])
    return (
        pl.concat(frames, how="diagonal_relaxed")
        .with_columns(
            *[pl.col(c).fill_null(0) for c in ("client_count", "active_client_count", "deals_created")],
            pl.lit(w["window_start_month"]).alias("window_start_month"),
            pl.lit(w["window_end_month"]).alias("window_end_month"),
            pl.lit(w["crisis_start"]).cast(pl.Date).alias("crisis_start"),
            pl.lit(w["crisis_end"]).cast(pl.Date).alias("crisis_end"),
            pl.lit(w["baseline_start"]).cast(pl.Date).alias("baseline_start"),
            pl.lit(w["baseline_end"]).cast(pl.Date).alias("baseline_end"),
            pl.lit(w["crisis_window_method"]).cast(pl.String).alias("crisis_window_method"),
            _ratio(pl.col("deals_won"), pl.col("deals_won") + pl.col("deals_lost")).alias("win_rate"),
            (_ratio(pl.col("_crisis_turnover"), pl.col("_baseline_turnover")) - 1).alias("turnover_change"),
            (_ratio(pl.col("_crisis_created"), pl.col("_baseline_created")) - 1).alias("lead_inflow_change"),
            (_ratio(pl.col("crisis_win_rate"), pl.col("baseline_win_rate")) - 1).alias("win_rate_change"),
            _ratio(pl.col("headroom_reporting"), pl.col("turnover_reporting")).alias("headroom_share"),
            pl.when(pl.col("grouping") == "total")
            .then(pl.lit("book"))
            .when(pl.col("elasticity_deal_count") >= s.min_elasticity_deals)
            .then(
                pl.when(pl.col("price_elasticity") > threshold).then(pl.lit("high")).otherwise(pl.lit("low"))
            )
            .otherwise(pl.lit(UNKNOWN))
            .alias("price_sensitivity_class"),
            pl.when(pl.col("elasticity_deal_count") < s.min_elasticity_deals)
            .then(pl.lit(UNKNOWN))
            .when(
                (pl.col("price_elasticity_low") > threshold) | (pl.col("price_elasticity_high") < threshold)
            )
            .then(pl.lit("significant"))
            .otherwise(pl.lit("uncertain"))
            .alias("price_sensitivity_confidence"),
            pl.lit(threshold, pl.Float64).alias("elastic_threshold"),
        )
        .with_columns(
            (pl.col("win_rate") * pl.col("average_won_deal_reporting")).alias("revenue_per_lead_reporting"),
            pl.mean_horizontal(resilience_parts).alias("resilience_change"),
            resilience_score.alias("resilience_score"),
            *[
                _ratio(pl.col(c), pl.col(c).sum().over("grouping")).alias(share)
                for c, share in (
                    ("turnover_reporting", "turnover_share"),
                    ("margin_reporting", "margin_share"),
                    ("deals_created", "lead_inflow_share"),
                )
            ],
        )
        .with_columns(
            _ratio(pl.lit(1_000_000.0), pl.col("revenue_per_lead_reporting")).alias("leads_per_million_won"),
            pl.col("resilience_score")
            .rank("min", descending=True)
            .over("grouping")
            .cast(pl.Int64)
            .alias("resilience_rank"),
            (
                weights[0] * pct("revenue_per_lead_reporting").fill_null(0)
                + weights[1] * pct("headroom_reporting").fill_null(0)
                + weights[2] * pct("resilience_score").fill_null(0)
            )
            .truediv(sum(weights))
            .alias("focus_score"),
        )
        .with_columns(
            pl.col("focus_score")
            .rank("min", descending=True)
            .over("grouping")
            .cast(pl.Int64)
            .alias("focus_rank")
        )
        .select(SCORECARD_COLUMNS)
        .sort(["grouping", "focus_rank", "segment_label"])
    )


SCORECARD_COLUMNS = [
    "grouping",
    "segment_label",
    "industry",
    "use_case",
    "segment",
    "business_line",
    "window_start_month",
    "window_end_month",
    "client_count",
    "active_client_count",
    "lifetime_turnover_reporting",
    "lifetime_margin_reporting",
    "turnover_reporting",
    "margin_reporting",
    "turnover_share",
    "margin_share",
    "abc_turnover_a_client_count",
    "abc_turnover_b_client_count",
    "abc_turnover_c_client_count",
    "abc_margin_a_client_count",
    "abc_margin_b_client_count",
    "abc_margin_c_client_count",
    "xyz_x_client_count",
    "xyz_y_client_count",
    "xyz_z_client_count",
    "high_effort_low_return_client_count",
    "deals_created",
    "lead_inflow_share",
    "deals_won",
    "deals_lost",
    "win_rate",
    "average_won_deal_reporting",
    "revenue_per_lead_reporting",
    "leads_per_million_won",
    "discount_depth",
    "discount_depth_se",
    "price_elasticity",
    "price_elasticity_se",
    "price_elasticity_low",
    "price_elasticity_high",
    "elasticity_deal_count",
    "elastic_threshold",
    "price_sensitivity_class",
    "price_sensitivity_confidence",
    "crisis_start",
    "crisis_end",
    "baseline_start",
    "baseline_end",
    "crisis_window_method",
    "turnover_change",
    "lead_inflow_change",
    "crisis_win_rate",
    "baseline_win_rate",
    "win_rate_change",
    "resilience_change",
    "resilience_score",
    "resilience_rank",
    "headroom_reporting",
    "headroom_share",
    "focus_score",
    "focus_rank",
]
