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

Where it runs: invoice lines and deals are summed per client x business line (and the first invoice
per deal) in DuckDB SQL (`segment_scorecard_from_tables`; DECIMAL sums exact); the groupings,
estimates and ranks are Polars on those sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from transforms.client_base import UNKNOWN, _ratio, discount_depth, month_index, month_of_index
from transforms.sql import Tables, date_literal, frame_tables

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


_CRISIS_COLUMNS = {
    "crisis_start": pl.Date,
    "crisis_end": pl.Date,
    "baseline_start": pl.Date,
    "baseline_end": pl.Date,
    "crisis_inflow_change": pl.Float64,
    "crisis_window_method": pl.String,
}


def _configured_crisis(s: ScorecardSettings) -> pl.LazyFrame | None:
    if (s.crisis_start is None) != (s.crisis_end is None):
        raise ValueError("configure both crisis_start and crisis_end, or neither")
    if s.crisis_start is None or s.crisis_end is None:
        return None
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
        schema=_CRISIS_COLUMNS,
    )


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
    configured = _configured_crisis(s)
    if configured is not None:
        return configured
    monthly = (
        deals.filter(pl.col("created_at").dt.date() <= as_of)
        .group_by(month_index(pl.col("created_at").dt.date()).alias("month"))
        .agg(pl.len().cast(pl.Float64).alias("created"))
        .collect()
    )
    return crisis_window_from_months(monthly, as_of, s)


MONTHLY_CREATED_SQL = """
    select year(cast(created_at as date)) * 12 + month(cast(created_at as date)) - 1 as month,
        cast(count(*) as double) as created
    from {deals}
    where cast(created_at as date) <= {as_of}
    group by month
"""
"""Deals created per month index (`month_index`) up to the as-of date: the input of
`crisis_window_from_months`."""


def crisis_window_from_tables(
    t: Tables, as_of: date, settings: ScorecardSettings | None = None
) -> pl.LazyFrame:
    """`crisis_window` with `{deals}` (marts.dim_deals) bound in `t`: the monthly counts come from SQL."""
    s = settings or ScorecardSettings()
    configured = _configured_crisis(s)
    if configured is not None:
        return configured
    return crisis_window_from_months(t.frame(MONTHLY_CREATED_SQL, as_of=date_literal(as_of)), as_of, s)


def crisis_window_from_months(
    monthly: pl.DataFrame, as_of: date, settings: ScorecardSettings | None = None
) -> pl.LazyFrame:
    """`crisis_window` (detected) from the deals created per month (month, created)."""
    s = settings or ScorecardSettings()
    columns = _CRISIS_COLUMNS
    n = s.crisis_months
    last_complete = as_of.year * 12 + as_of.month - 2
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

SCORECARD_SOURCES = ("lines", "deals")
"""The large inputs, read by SQL (`transforms.sql.Tables`): intermediate.int_invoice_lines_converted and
marts.dim_deals. Only their per client x business line (and per deal) aggregates come to Polars."""


_DEAL_LINES_SQL = """
    left join (select deal_id, business_line from {deals}) as deals on lines.deal_id = deals.deal_id
"""


def _category_lines_sql(groups: str) -> str:
    """Per product category: the business line that carries most of its deal-attributed turnover
    (absolute net amounts; ties to the first line name). `groups`: product_category, deal_line, abs_net."""
    return f"""
        select product_category, deal_line as category_line
        from (
            select product_category, deal_line,
                row_number() over (
                    partition by product_category order by sum(abs_net) desc, deal_line
                ) as rank
            from ({groups})
            where deal_line is not null
            group by product_category, deal_line
        )
        where rank = 1
    """


def attribute_business_line(lines: pl.LazyFrame, deals: pl.LazyFrame) -> pl.LazyFrame:
    """Invoice lines with a `business_line`: the deal's, else the category's main line, else unattributed."""
    with frame_tables({"lines": lines, "deals": deals}) as t:
        t.materialize(
            "category_lines",
            _category_lines_sql(
                "select lines.product_category, deals.business_line as deal_line, "
                f"abs(lines.net_amount_reporting) as abs_net from {{lines}} as lines {_DEAL_LINES_SQL}"
            ),
        )
        return t.frame(
            f"""
            select lines.*,
                coalesce(deals.business_line, category_lines.category_line, '{UNATTRIBUTED}') as business_line
            from {{lines}} as lines
            {_DEAL_LINES_SQL}
            left join {{category_lines}} as category_lines
                on lines.product_category = category_lines.product_category
            """
        ).lazy()


def _with_client_dims(frame: pl.LazyFrame, segments: pl.LazyFrame) -> pl.LazyFrame:
    dims = segments.select("client_id", "industry", "use_case", "segment")
    return frame.join(dims, on="client_id", how="left").with_columns(
        *[pl.col(c).fill_null(UNKNOWN) for c in ("industry", "use_case", "segment")]
    )


def _date_sql(day: date | None) -> str:
    return date_literal(day) if day is not None else "cast(null as date)"


def _line_facts(t: Tables, window: dict[str, date | None], as_of: date) -> pl.DataFrame:
    """Per client x business line of the invoice lines (attributed as `attribute_business_line` does;
    sums exact): turnover and margin up to the as-of month (lifetime, analysis window, crisis and
    baseline; `has_turnover`), and net and list value of the invoice lines up to the as-of date, credit
    notes aside (`has_price_lines`). One read of the lines."""
    as_of_month = date_literal(as_of.replace(day=1))

    def months(start: str, end: str) -> str:
        return f"turnover_month <= {as_of_month} and turnover_month between {start} and {end}"

    win = (_date_sql(window["window_start_month"]), _date_sql(window["window_end_month"]))
    crisis = (_date_sql(window["crisis_start"]), _date_sql(window["crisis_end"]))
    base = (_date_sql(window["baseline_start"]), _date_sql(window["baseline_end"]))
    priced = f"not coalesce(is_credit_note, false) and issue_date <= {date_literal(as_of)}"
    net, margin = "net_amount_reporting", "margin_reporting"
    # Per client x deal line x product category: enough to attribute every line and to sum.
    t.materialize(
        "line_groups",
        f"""
        select lines.client_id, deals.business_line as deal_line, lines.product_category,
            sum(abs({net})) as abs_net,
            count(*) filter (where turnover_month <= {as_of_month}) as turnover_rows,
            sum({net}) filter (where turnover_month <= {as_of_month}) as lifetime_net,
            sum({margin}) filter (where turnover_month <= {as_of_month}) as lifetime_margin,
            sum({net}) filter (where {months(*win)}) as window_net,
            sum({margin}) filter (where {months(*win)}) as window_margin,
            sum({net}) filter (where {months(*crisis)}) as crisis_net,
            sum({net}) filter (where {months(*base)}) as baseline_net,
            count(*) filter (where {priced}) as priced_rows,
            sum({net}) filter (where {priced}) as priced_net,
            sum(list_amount_reporting) filter (where {priced}) as priced_list
        from {{lines}} as lines
        {_DEAL_LINES_SQL}
        group by lines.client_id, deal_line, lines.product_category
        """,
    )
    t.materialize(
        "category_lines",
        _category_lines_sql("select product_category, deal_line, abs_net from {line_groups}"),
    )
    return t.frame(
        f"""
        select client_id, business_line,
            sum(turnover_rows) > 0 as has_turnover,
            cast(sum(lifetime_net) as double) as lifetime_net,
            cast(sum(lifetime_margin) as double) as lifetime_margin,
            cast(coalesce(sum(window_net), 0) as double) as window_net,
            cast(coalesce(sum(window_margin), 0) as double) as window_margin,
            cast(coalesce(sum(crisis_net), 0) as double) as crisis_net,
            cast(coalesce(sum(baseline_net), 0) as double) as baseline_net,
            sum(priced_rows) > 0 as has_price_lines,
            cast(sum(priced_net) as double) as net_amount_reporting,
            cast(sum(priced_list) as double) as list_amount_reporting
        from (
            select line_groups.*,
                coalesce(deal_line, category_lines.category_line, '{UNATTRIBUTED}') as business_line
            from {{line_groups}} as line_groups
            left join {{category_lines}} as category_lines
                on line_groups.product_category = category_lines.product_category
        )
        group by client_id, business_line
        """
    )


def _deal_facts(t: Tables, window: dict[str, date | None], as_of: date) -> pl.LazyFrame:
    """Per client x business line of the deals created up to the as-of date: created, won and lost in
    the analysis window (with the won amounts' sum and count), created in the crisis window and its
    baseline, won and closed in each."""
    created = "cast(created_at as date)"
    closed = "cast(coalesce(won_at, lost_at) as date)"

    def between(day: str, start: date | None, end: date | None) -> str:
        return f"{day} between {_date_sql(start)} and {_date_sql(end)}"

    win = (window["window_start_month"], _month_end(window["window_end_month"]))
    crisis = (window["crisis_start"], window["crisis_end"])
    base = (window["baseline_start"], window["baseline_end"])
    won_in_window = f"{between(closed, *win)} and status = 'won'"
    return t.frame(
        f"""
        select client_id, business_line,
            count(*) filter (where {between(created, *win)}) as deals_created,
            count(*) filter (where {won_in_window}) as deals_won,
            count(*) filter (where {between(closed, *win)} and status = 'lost') as deals_lost,
            cast(sum(amount_reporting) filter (where {won_in_window}) as double) as won_amount_sum,
            count(amount_reporting) filter (where {won_in_window}) as won_amount_count,
            count(*) filter (where {between(created, *crisis)}) as crisis_created,
            count(*) filter (where {between(created, *base)}) as baseline_created,
            count(*) filter (where {between(closed, *crisis)} and status = 'won') as crisis_won,
            count(*) filter (where {between(closed, *crisis)} and status in ('won', 'lost'))
                as crisis_closed,
            count(*) filter (where {between(closed, *base)} and status = 'won') as baseline_won,
            count(*) filter (where {between(closed, *base)} and status in ('won', 'lost'))
                as baseline_closed
        from {{deals}}
        where {created} <= {date_literal(as_of)}
        group by client_id, business_line
        """
    ).lazy()


def _price_observations(t: Tables, as_of: date) -> pl.LazyFrame:
    """One row per deal with an invoice: list value and price level of its first invoice (EUR)."""
    return t.frame(
        f"""
        select first_invoices.deal_id, first_invoices.client_id, deals.business_line,
            ln(list_value) as log_volume, ln(net_value / list_value) as log_price_level
        from (
            select deal_id, any_value(client_id) as client_id,
                cast(sum(net_amount_reporting) as double) as net_value,
                cast(sum(list_amount_reporting) as double) as list_value
            from (
                select deal_id, client_id, net_amount_reporting, list_amount_reporting, issue_date,
                    min(issue_date) over (partition by deal_id) as first_issue_date
                from {{lines}}
                where not coalesce(is_credit_note, false) and deal_id is not null
                    and issue_date <= {date_literal(as_of)}
            )
            where issue_date = first_issue_date
            group by deal_id
        ) as first_invoices
        inner join (select deal_id, business_line from {{deals}}) as deals
            on first_invoices.deal_id = deals.deal_id
        where net_value > 0 and list_value > 0
        """
    ).lazy()


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


def _grouping_frame(name: str, keys: tuple[str, ...], facts: dict[str, pl.LazyFrame]) -> pl.LazyFrame:
    # The total row groups by a constant column, so every grouping takes the same path.
    k = list(keys) or ["_all"]
    facts = {n: f.with_columns(pl.lit(TOTAL_LABEL).alias("_all")) for n, f in facts.items()}

    # Per client x line sums (`_line_facts`, `_deal_facts`) add up to any grouping of clients and lines.
    turnover = (
        facts["turnover"]
        .group_by(k)
        .agg(
            pl.col("lifetime_net").sum().alias("lifetime_turnover_reporting"),
            pl.col("lifetime_margin").sum().alias("lifetime_margin_reporting"),
            pl.col("window_net").sum().alias("turnover_reporting"),
            pl.col("window_margin").sum().alias("margin_reporting"),
            pl.col("crisis_net").sum().alias("_crisis_turnover"),
            pl.col("baseline_net").sum().alias("_baseline_turnover"),
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
    won_count = pl.col("won_amount_count").sum()
    funnel = (
        facts["deals"]
        .group_by(k)
        .agg(
            pl.col("deals_created").sum().cast(pl.Int64),
            pl.col("deals_won").sum().cast(pl.Int64),
            pl.col("deals_lost").sum().cast(pl.Int64),
            pl.when(won_count > 0)
            .then(pl.col("won_amount_sum").sum() / won_count)
            .alias("average_won_deal_reporting"),
            pl.col("crisis_created").sum().alias("_crisis_created"),
            pl.col("baseline_created").sum().alias("_baseline_created"),
            _ratio(pl.col("crisis_won").sum(), pl.col("crisis_closed").sum()).alias("crisis_win_rate"),
            _ratio(pl.col("baseline_won").sum(), pl.col("baseline_closed").sum()).alias("baseline_win_rate"),
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
    with frame_tables({"lines": lines, "deals": deals}) as t:
        return segment_scorecard_from_tables(t, segments, crisis, as_of, settings)


def segment_scorecard_from_tables(
    t: Tables,
    segments: pl.LazyFrame,
    crisis: pl.LazyFrame,
    as_of: date,
    settings: ScorecardSettings | None = None,
) -> pl.LazyFrame:
    """`segment_scorecard` with `SCORECARD_SOURCES` bound in `t`: invoice lines and deals are summed per
    client x business line in DuckDB (and the first invoice per deal), the groupings, estimates and ranks
    computed in Polars."""
    s = settings or ScorecardSettings()
    window = _window(segments, crisis)
    line_facts = _line_facts(t, window, as_of)
    turnover = _with_client_dims(line_facts.filter("has_turnover").lazy(), segments)
    price_lines = _with_client_dims(line_facts.filter("has_price_lines").lazy(), segments)
    client_lines = line_facts.filter("has_turnover").select("client_id", "business_line").lazy()
    segment_rows = segments.drop("business_line", strict=False)
    observations = _with_client_dims(_price_observations(t, as_of), segments)
    facts = {
        "turnover": turnover,
        "members": segment_rows,
        "members_by_line": segment_rows.join(client_lines, on="client_id", how="inner"),
        "deals": _with_client_dims(_deal_facts(t, window, as_of), segments),
        "price_lines": price_lines,
        "observations": observations,
    }
    frames = [_grouping_frame(name, keys, facts) for name, keys in GROUPINGS.items()]
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
