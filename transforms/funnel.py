"""Funnel conversion and cohorts, from the stage-event log (`marts.fct_stage_transitions`).

Definitions (see `docs/funnel.md` for the reasons):

- **Stages shown.** Per business line: the pipeline's current open stages in order, then won. Lost is
  terminal and never a funnel row. For the all-lines total (`business_line = '(all)'`) only stages that
  every pipeline has at the same position are comparable: those, plus won.
- **Reached (any-stage, the default).** A deal reached stage k when it entered k or any later non-lost
  stage (a retired stage included); `reached_at` is the first such entry. **Strict**: it entered every
  current stage up to k, first entries in stage order; `reached_strict_at` is its first entry into k.
- **Advanced / dropped / pending.** Of the deals that reached k, *advanced* reached the next shown
  stage by the as-of date; *dropped* did not and are lost now; *pending* did not and are still open.
  Step conversion = advanced / (advanced + dropped): open deals are neither success nor failure yet,
  so a young period is not read as a bad one.
- **Conversion to won** C_k = product of the step conversions from k to the last open stage, and
  **cumulative conversion** (share of stage-1 deals reaching k) = product of the steps before k. Both
  chain the steps of the same period, so C_k never falls and the cumulative share never rises down the
  funnel, and the reverse funnel (leads x C_1 x average won deal = target) is exact.
- Counts are additive over periods: each deal's first reach of a stage falls in exactly one period.
- **Time in stage**: completed spells, by the period they ended in (one spell = one stay; a deal that
  came back to a stage has two). **Stage fill / SLA breaches**: open spells at the end of the period's
  last day (or of the as-of day for the running period); a spell breaches when its age in whole days
  exceeds the stage's SLA, as in `dim_deals.is_sla_breached`.
- **Deal figures** (win rates, average won deal, sales cycle, velocity) are per period x line x segment
  and repeated on every stage row of that group: do not sum them over stages.
- **Status** comes from the deal's last stage event on or before the as-of date, so the figures of a
  past as-of date are rebuilt from the events before it.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

ALL = "(all)"
"""Label of the total rows (all business lines, all segments)."""
UNKNOWN_SEGMENT = "unknown"
GRAINS = ("month", "quarter")
_TRUNCATE = {"month": "1mo", "quarter": "1q"}
_FAR_FUTURE = pl.datetime(9999, 12, 31)
_DAY_SECONDS = 86_400.0


def _days(duration: pl.Expr) -> pl.Expr:
    return duration.dt.total_seconds(fractional=True) / _DAY_SECONDS


def _end_of_day(day: date) -> pl.Expr:
    return pl.lit(day + timedelta(days=1)).cast(pl.Datetime("us"))


def _ratio(numerator: str | pl.Expr, denominator: str | pl.Expr) -> pl.Expr:
    num = pl.col(numerator) if isinstance(numerator, str) else numerator
    den = pl.col(denominator) if isinstance(denominator, str) else denominator
    return pl.when(den > 0).then(num / den).otherwise(None)


# --------------------------------------------------------------------------------------------- inputs


def deal_attributes(dim_deals: pl.LazyFrame, dim_clients: pl.LazyFrame) -> pl.LazyFrame:
    """One row per deal: business line, client segment ('unknown' without a client), creation, amount."""
    segments = dim_clients.select("client_id", "segment")
    return dim_deals.join(segments, on="client_id", how="left").select(
        "deal_id",
        "business_line",
        pl.col("segment").fill_null(UNKNOWN_SEGMENT),
        "created_at",
        pl.col("amount_reporting").cast(pl.Float64),
    )


def funnel_stages(stages: pl.LazyFrame) -> pl.LazyFrame:
    """One row per shown stage per view: `view_business_line` is the pipeline, or '(all)' for the stages
    shared by every pipeline at the same position plus won. `next_stage_order` is the pipeline order of
    the next shown stage (null on won)."""
    current = stages.filter(~pl.col("is_deleted") & ~pl.col("is_lost")).select(
        "pipeline_id", "stage_id", "stage_name", "stage_order", "is_won", "sla_days"
    )
    own = current.with_columns(view_business_line=pl.col("pipeline_id"))
    pipeline_count = current.select(pl.col("pipeline_id").n_unique().alias("pipeline_count"))
    shared_keys = (
        current.filter(~pl.col("is_won"))
        .group_by("stage_id", "stage_order")
        .agg(pl.len().alias("pipelines_with_stage"))
        .join(pipeline_count, how="cross")
        .filter(pl.col("pipelines_with_stage") == pl.col("pipeline_count"))
        .select("stage_id", "stage_order")
    )
    shared = pl.concat(
        [current.join(shared_keys, on=["stage_id", "stage_order"]), current.filter(pl.col("is_won"))]
    ).with_columns(view_business_line=pl.lit(ALL))
    return (
        pl.concat([own, shared])
        .sort("view_business_line", "pipeline_id", "stage_order")
        .with_columns(
            stage_number=pl.col("stage_order").rank("ordinal").over("view_business_line", "pipeline_id"),
            next_stage_order=pl.col("stage_order")
            .shift(-1)
            .over("view_business_line", "pipeline_id", order_by="stage_order"),
        )
        .with_columns(pl.col("stage_number").cast(pl.Int64))
    )


def deal_events(transitions: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """The stage changes on or before the as-of date, in order per deal."""
    return (
        transitions.filter(pl.col("changed_at") < _end_of_day(as_of))
        .select(
            "deal_id",
            "from_stage_id",
            "from_stage_days",
            "to_stage_id",
            "to_stage_order",
            "changed_at",
            "transition_number",
            "is_to_won",
            "is_to_lost",
        )
        .sort("deal_id", "changed_at", "transition_number")
    )


def deal_outcomes(events: pl.LazyFrame, deals: pl.LazyFrame) -> pl.LazyFrame:
    """One row per deal with stage history: line, segment, amount, first entry into the funnel, and its
    status from the last event (open / won / lost) with the close time."""
    last_event = events.group_by("deal_id").agg(
        entered_funnel_at=pl.col("changed_at").min(),
        last_at=pl.col("changed_at").last(),
        last_is_won=pl.col("is_to_won").last(),
        last_is_lost=pl.col("is_to_lost").last(),
    )
    return deals.join(last_event, on="deal_id", how="inner").select(
        "deal_id",
        "business_line",
        "segment",
        "created_at",
        "amount_reporting",
        "entered_funnel_at",
        status=pl.when("last_is_won")
        .then(pl.lit("won"))
        .when("last_is_lost")
        .then(pl.lit("lost"))
        .otherwise(pl.lit("open")),
        won_at=pl.when("last_is_won").then("last_at"),
        lost_at=pl.when("last_is_lost").then("last_at"),
    )


# ------------------------------------------------------------------------------------- deal x stage


def deal_stage_reach(events: pl.LazyFrame, outcomes: pl.LazyFrame, stages: pl.LazyFrame) -> pl.LazyFrame:
    """One row per deal x view x shown stage of its pipeline: when it reached the stage (any-stage and
    strict), whether it advanced to the next shown stage, dropped out (lost) or is pending (open)."""
    first_entries = (
        events.filter(~pl.col("is_to_lost"))
        .group_by("deal_id", "to_stage_id", "to_stage_order")
        .agg(first_at=pl.col("changed_at").min())
    )
    furthest = first_entries.group_by("deal_id").agg(furthest_order=pl.col("to_stage_order").max())
    grid = outcomes.join(stages, left_on="business_line", right_on="pipeline_id")
    # First reach of stage k = earliest first entry into k or a later stage: a suffix minimum over the
    # deal's entries in stage order, picked for each stage by an as-of join (the next entered order >= k).
    earliest_from_here = (
        first_entries.group_by("deal_id", "to_stage_order")
        .agg(pl.col("first_at").min())
        .with_columns(
            reached_at=pl.col("first_at").cum_min(reverse=True).over("deal_id", order_by="to_stage_order")
        )
        .select("deal_id", "to_stage_order", "reached_at")
        .sort("to_stage_order")
    )
    reached_any = (
        grid.select("deal_id", "view_business_line", "stage_id", "stage_order")
        .sort("stage_order")
        .join_asof(
            earliest_from_here,
            left_on="stage_order",
            right_on="to_stage_order",
            by="deal_id",
            strategy="forward",
            check_sortedness=False,  # both sides are sorted on the order above
        )
        .select("deal_id", "view_business_line", "stage_id", "reached_at")
    )
    # Strict: every current stage up to k entered, first entries in stage order (ties allowed).
    own_stages = stages.filter(pl.col("view_business_line") == pl.col("pipeline_id"))
    strict = (
        outcomes.select("deal_id", "business_line")
        .join(
            own_stages.select("pipeline_id", "stage_id", "stage_order"),
            left_on="business_line",
            right_on="pipeline_id",
        )
        .join(
            first_entries.select("deal_id", pl.col("to_stage_id").alias("stage_id"), "first_at"),
            on=["deal_id", "stage_id"],
            how="left",
        )
        .sort("deal_id", "stage_order")
        .with_columns(
            previous_max_at=pl.col("first_at").cum_max().shift(1).over("deal_id", order_by="stage_order")
        )
        .with_columns(
            is_in_order=pl.col("first_at").is_not_null()
            & (pl.col("previous_max_at").is_null() | (pl.col("first_at") >= pl.col("previous_max_at")))
        )
        .with_columns(
            is_reached_strict=pl.col("is_in_order").cum_min().over("deal_id", order_by="stage_order")
        )
        .select(
            "deal_id",
            "stage_id",
            reached_strict_at=pl.when("is_reached_strict").then("first_at"),
        )
    )
    return (
        grid.join(reached_any, on=["deal_id", "view_business_line", "stage_id"], how="left")
        .join(strict, on=["deal_id", "stage_id"], how="left")
        .join(furthest, on="deal_id", how="left")
        .filter(pl.col("reached_at").is_not_null() | pl.col("reached_strict_at").is_not_null())
        .with_columns(
            has_advanced=pl.when(pl.col("next_stage_order").is_not_null()).then(
                pl.col("furthest_order") >= pl.col("next_stage_order")
            )
        )
        .with_columns(
            is_dropped=~pl.col("has_advanced") & (pl.col("status") == "lost"),
            is_pending=~pl.col("has_advanced") & (pl.col("status") == "open"),
            is_eventually_won=pl.col("status") == "won",
        )
        .select(
            "deal_id",
            "business_line",
            "view_business_line",
            "segment",
            "stage_id",
            "stage_number",
            "reached_at",
            "reached_strict_at",
            "has_advanced",
            "is_dropped",
            "is_pending",
            "is_eventually_won",
            "amount_reporting",
            "status",
            "won_at",
        )
    )


# ------------------------------------------------------------------------------------------- periods


def period_calendar(first_at: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """One row per month and quarter from the first event's to the as-of date's: grain, period start and
    end, and the day whose end the fill is measured at (the period end, or the as-of date)."""
    frames = []
    for grain in GRAINS:
        frames.append(
            first_at.select(
                period_start=pl.date_ranges(
                    pl.col("first_at").dt.date().dt.truncate(_TRUNCATE[grain]),
                    pl.lit(as_of),
                    _TRUNCATE[grain],
                )
            )
            .explode("period_start")
            .with_columns(period_grain=pl.lit(grain))
        )
    return (
        pl.concat(frames)
        .with_columns(
            period_end=pl.when(pl.col("period_grain") == "month")
            .then(pl.col("period_start").dt.month_end())
            .otherwise(pl.col("period_start").dt.offset_by("3mo").dt.offset_by("-1d"))
        )
        .with_columns(fill_date=pl.min_horizontal("period_end", pl.lit(as_of)))
        .select("period_grain", "period_start", "period_end", "fill_date")
    )


def _by_period(frame: pl.LazyFrame, at_column: str) -> pl.LazyFrame:
    """Each row once per grain, with the start of the month / quarter of `at_column`."""
    return pl.concat(
        [
            frame.with_columns(
                period_grain=pl.lit(grain),
                period_start=pl.col(at_column).dt.date().dt.truncate(_TRUNCATE[grain]),
            )
            for grain in GRAINS
        ]
    )


def _with_segment_total(frame: pl.LazyFrame) -> pl.LazyFrame:
    return pl.concat([frame, frame.with_columns(segment=pl.lit(ALL))])


def _with_line_and_segment_totals(frame: pl.LazyFrame) -> pl.LazyFrame:
    with_lines = pl.concat([frame, frame.with_columns(business_line=pl.lit(ALL))])
    return _with_segment_total(with_lines)


def line_segment_universe(deals: pl.LazyFrame, targets: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Every business line x segment that has a deal or a target, with the totals: the rows every output
    must show, so a segment without deals is an explicit row of zeros, not a missing one."""
    pairs = deals.select("business_line", "segment")
    if targets is not None:
        pairs = pl.concat([pairs, targets.select("business_line", "segment")])
    return _with_line_and_segment_totals(pairs.unique()).unique()


# --------------------------------------------------------------------------------------- conversion

_GROUP = ["period_grain", "period_start", "business_line", "segment"]
_STAGE_GROUP = [*_GROUP, "stage_id"]


def _reach_counts(reach: pl.LazyFrame) -> pl.LazyFrame:
    by_line = _with_segment_total(
        reach.rename({"business_line": "deal_business_line"}).rename({"view_business_line": "business_line"})
    )
    any_stage = (
        _by_period(by_line.filter(pl.col("reached_at").is_not_null()), "reached_at")
        .group_by(_STAGE_GROUP)
        .agg(
            reached_count=pl.len(),
            advanced_count=pl.col("has_advanced").sum(),
            dropped_count=pl.col("is_dropped").sum(),
            pending_count=pl.col("is_pending").sum(),
            eventually_won_count=pl.col("is_eventually_won").sum(),
        )
    )
    strict = (
        _by_period(by_line.filter(pl.col("reached_strict_at").is_not_null()), "reached_strict_at")
        .group_by(_STAGE_GROUP)
        .agg(reached_strict_count=pl.len())
    )
    return any_stage.join(strict, on=_STAGE_GROUP, how="full", coalesce=True)


def _time_in_stage(events: pl.LazyFrame, outcomes: pl.LazyFrame, stages: pl.LazyFrame) -> pl.LazyFrame:
    completed = (
        events.filter(pl.col("from_stage_id").is_not_null() & pl.col("from_stage_days").is_not_null())
        .join(outcomes.select("deal_id", "business_line", "segment"), on="deal_id")
        .join(
            stages.select("pipeline_id", "view_business_line", "stage_id"),
            left_on=["business_line", "from_stage_id"],
            right_on=["pipeline_id", "stage_id"],
        )
        .select(
            pl.col("view_business_line").alias("business_line"),
            "segment",
            pl.col("from_stage_id").alias("stage_id"),
            "changed_at",
            "from_stage_days",
        )
    )
    return (
        _by_period(_with_segment_total(completed), "changed_at")
        .group_by(_STAGE_GROUP)
        .agg(
            completed_spell_count=pl.len(),
            time_in_stage_median_days=pl.col("from_stage_days").median(),
            time_in_stage_p80_days=pl.col("from_stage_days").quantile(0.8, interpolation="linear"),
            time_in_stage_mean_days=pl.col("from_stage_days").mean(),
        )
    )


def open_spells(events: pl.LazyFrame) -> pl.LazyFrame:
    """Stays in an open stage: deal, stage, entered and exited (null while open)."""
    return (
        events.with_columns(
            exited_at=pl.col("changed_at")
            .shift(-1)
            .over("deal_id", order_by=["changed_at", "transition_number"])
        )
        .filter(~pl.col("is_to_won") & ~pl.col("is_to_lost"))
        .select(
            "deal_id",
            pl.col("to_stage_id").alias("stage_id"),
            pl.col("changed_at").alias("entered_at"),
            "exited_at",
        )
    )


def _stage_fill(
    events: pl.LazyFrame, outcomes: pl.LazyFrame, stages: pl.LazyFrame, calendar: pl.LazyFrame
) -> pl.LazyFrame:
    spells = (
        open_spells(events)
        .join(outcomes.select("deal_id", "business_line", "segment", "amount_reporting"), on="deal_id")
        .join(
            stages.select("pipeline_id", "view_business_line", "stage_id", "sla_days"),
            left_on=["business_line", "stage_id"],
            right_on=["pipeline_id", "stage_id"],
        )
        .with_columns(exited_at=pl.col("exited_at").fill_null(_FAR_FUTURE))
    )
    ends = calendar.select(
        "period_grain",
        "period_start",
        "fill_date",
        fill_until_at=pl.col("fill_date").dt.offset_by("1d").cast(pl.Datetime("us")),
    )
    # Open at the end of the fill day: entered before midnight and not yet left.
    in_stage = spells.join_where(
        ends, pl.col("entered_at") < pl.col("fill_until_at"), pl.col("exited_at") >= pl.col("fill_until_at")
    ).with_columns(
        is_sla_breached=(pl.col("fill_date") - pl.col("entered_at").dt.date()).dt.total_days()
        > pl.col("sla_days")
    )
    return (
        _with_segment_total(in_stage.drop("business_line").rename({"view_business_line": "business_line"}))
        .group_by(_STAGE_GROUP)
        .agg(
            open_deal_count=pl.len(),
            open_amount_reporting=pl.col("amount_reporting").sum(),
            sla_breach_count=pl.col("is_sla_breached").sum(),
        )
    )


def _deal_figures(outcomes: pl.LazyFrame) -> pl.LazyFrame:
    closed = outcomes.filter(pl.col("status") != "open").with_columns(
        closed_at=pl.coalesce("won_at", "lost_at"),
        is_won=pl.col("status") == "won",
        cycle_days=pl.when(pl.col("status") == "won").then(_days(pl.col("won_at") - pl.col("created_at"))),
    )
    won_amount = pl.when("is_won").then("amount_reporting")
    return (
        _by_period(_with_line_and_segment_totals(closed), "closed_at")
        .group_by(_GROUP)
        .agg(
            won_count=pl.col("is_won").sum(),
            lost_count=(~pl.col("is_won")).sum(),
            won_amount_reporting=won_amount.sum(),
            lost_amount_reporting=pl.when(~pl.col("is_won")).then("amount_reporting").sum(),
            average_won_deal_reporting=won_amount.mean(),
            sales_cycle_median_days=pl.col("cycle_days").median(),
            sales_cycle_p80_days=pl.col("cycle_days").quantile(0.8, interpolation="linear"),
        )
    )


def funnel_conversion(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
) -> pl.LazyFrame:
    """One row per period (month and quarter) x business line x segment x stage, totals included."""
    deals = deal_attributes(dim_deals, dim_clients)
    # Shared by several branches of the plan below: computed once.
    events = deal_events(transitions, as_of).cache()
    outcomes = deal_outcomes(events, deals).cache()
    shown = funnel_stages(stages)
    reach = deal_stage_reach(events, outcomes, shown).cache()
    calendar = period_calendar(outcomes.select(first_at=pl.col("entered_funnel_at").min()), as_of)
    universe = line_segment_universe(deals, targets)
    stage_rows = shown.select(
        pl.col("view_business_line").alias("business_line"),
        "stage_id",
        "stage_name",
        "stage_number",
        "is_won",
    ).unique(["business_line", "stage_id"])
    grid = (
        calendar.join(universe, how="cross")
        .join(stage_rows, on="business_line")
        .join(_reach_counts(reach), on=_STAGE_GROUP, how="left")
        .join(_time_in_stage(events, outcomes, shown), on=_STAGE_GROUP, how="left")
        .join(_stage_fill(events, outcomes, shown, calendar), on=_STAGE_GROUP, how="left")
        .join(_deal_figures(outcomes), on=_GROUP, how="left")
    )
    counts = [
        "reached_count",
        "reached_strict_count",
        "advanced_count",
        "dropped_count",
        "pending_count",
        "eventually_won_count",
        "completed_spell_count",
        "won_count",
        "lost_count",
    ]
    open_stage = ~pl.col("is_won")
    return (
        grid.with_columns(pl.col(counts).fill_null(0).cast(pl.Int64))
        .with_columns(
            pl.when(open_stage).then(pl.col(c).fill_null(0)).cast(dt).alias(c)
            for c, dt in [
                ("open_deal_count", pl.Int64),
                ("open_amount_reporting", pl.Float64),
                ("sla_breach_count", pl.Int64),
            ]
        )
        .with_columns(
            pl.col("won_amount_reporting", "lost_amount_reporting").fill_null(0.0),
            advanced_count=pl.when(open_stage).then("advanced_count"),
            dropped_count=pl.when(open_stage).then("dropped_count"),
            pending_count=pl.when(open_stage).then("pending_count"),
            step_conversion=pl.when(open_stage).then(
                _ratio("advanced_count", pl.col("advanced_count") + pl.col("dropped_count"))
            ),
        )
        .with_columns(chained_conversions(_GROUP))
        .with_columns(
            win_rate_count=_ratio("won_count", pl.col("won_count") + pl.col("lost_count")),
            win_rate_amount=_ratio(
                "won_amount_reporting", pl.col("won_amount_reporting") + pl.col("lost_amount_reporting")
            ),
            open_deals_in_funnel=pl.col("open_deal_count").sum().over(_GROUP),
        )
        .with_columns(
            pipeline_velocity_reporting_per_day=_ratio(
                pl.col("open_deals_in_funnel")
                * pl.col("win_rate_count")
                * pl.col("average_won_deal_reporting"),
                "sales_cycle_median_days",
            )
        )
        .select(
            "period_grain",
            "period_start",
            "period_end",
            "business_line",
            "segment",
            "stage_number",
            "stage_id",
            "stage_name",
            "reached_count",
            "reached_strict_count",
            "advanced_count",
            "dropped_count",
            "pending_count",
            "eventually_won_count",
            "step_conversion",
            "cumulative_conversion",
            "conversion_to_won",
            "completed_spell_count",
            "time_in_stage_median_days",
            "time_in_stage_p80_days",
            "time_in_stage_mean_days",
            "open_deal_count",
            "open_amount_reporting",
            "sla_breach_count",
            "won_count",
            "lost_count",
            "won_amount_reporting",
            "lost_amount_reporting",
            "win_rate_count",
            "win_rate_amount",
            "average_won_deal_reporting",
            "sales_cycle_median_days",
            "sales_cycle_p80_days",
            "open_deals_in_funnel",
            "pipeline_velocity_reporting_per_day",
        )
        .sort("period_grain", "period_start", "business_line", "segment", "stage_number")
    )


def chained_conversions(group: list[str], step: str = "step_conversion") -> list[pl.Expr]:
    """`conversion_to_won`: product of the steps from stage k to the last open one (1 on won);
    `cumulative_conversion`: product of the steps before k (1 on the first stage). Null where a step it
    needs is unknown (no decided deal). Rows of one group are ordered by `stage_number`, won last."""
    is_last = pl.col("stage_number") == pl.col("stage_number").max().over(group)
    steps = pl.when(is_last).then(pl.lit(1.0)).otherwise(pl.col(step))
    missing = steps.is_null().cast(pl.Int32)
    known = steps.fill_null(1.0)

    def window(expr: pl.Expr) -> pl.Expr:
        return expr.over(group, order_by="stage_number")

    return [
        pl.when(window(missing.cum_sum(reverse=True)) > 0)
        .then(None)
        .otherwise(window(known.cum_prod(reverse=True)))
        .alias("conversion_to_won"),
        pl.when(window(missing.shift(1, fill_value=0).cum_sum()) > 0)
        .then(None)
        .otherwise(window(known.shift(1, fill_value=1.0).cum_prod()))
        .alias("cumulative_conversion"),
    ]


# ------------------------------------------------------------------------------------------- cohorts

_COHORT_GROUP = ["cohort_month", "business_line", "segment"]


def _aalen_johansen(deals: pl.LazyFrame) -> pl.LazyFrame:
    """Cumulative incidence of won and of lost at each cohort's horizon (Aalen-Johansen: competing
    outcomes, open deals censored at the as-of date). Input: one row per deal with the cohort keys,
    `time_days`, `outcome` (won / lost / open) and `horizon_days`."""
    at_time = (
        deals.group_by([*_COHORT_GROUP, "time_days"])
        .agg(
            won_events=(pl.col("outcome") == "won").sum(),
            lost_events=(pl.col("outcome") == "lost").sum(),
            leaving=pl.len(),
            horizon_days=pl.col("horizon_days").first(),
        )
        .with_columns(cohort_size=pl.col("leaving").sum().over(_COHORT_GROUP))
    )
    window = {"partition_by": _COHORT_GROUP, "order_by": "time_days"}
    return (
        at_time.with_columns(
            at_risk=pl.col("cohort_size") - pl.col("leaving").cum_sum().shift(1, fill_value=0).over(**window)
        )
        .with_columns(
            survival_before=(1 - (pl.col("won_events") + pl.col("lost_events")) / pl.col("at_risk"))
            .cum_prod()
            .shift(1, fill_value=1.0)
            .over(**window)
        )
        .filter(pl.col("time_days") <= pl.col("horizon_days"))
        .group_by(_COHORT_GROUP)
        .agg(
            won_share_estimated=(pl.col("survival_before") * pl.col("won_events") / pl.col("at_risk")).sum(),
            lost_share_estimated=(
                pl.col("survival_before") * pl.col("lost_events") / pl.col("at_risk")
            ).sum(),
        )
        # Sums of float products: keep rounding from stepping past 1.
        .with_columns(pl.col("won_share_estimated", "lost_share_estimated").clip(0.0, 1.0))
    )


def funnel_cohorts(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    maturity_days: int = 180,
) -> pl.LazyFrame:
    """One row per cohort month of funnel entry x business line x segment (totals included): deals,
    observed won / lost / open shares, maturity, and the Aalen-Johansen estimate of the shares won and
    lost within `maturity_days` of entry (or within the days the cohort's oldest deal has been watched)."""
    deals = deal_attributes(dim_deals, dim_clients)
    outcomes = deal_outcomes(deal_events(transitions, as_of), deals)
    watched_until = _end_of_day(as_of)
    month_start = pl.col("cohort_month").cast(pl.Datetime("us"))
    month_end = pl.col("cohort_month").dt.month_end().dt.offset_by("1d").cast(pl.Datetime("us"))
    cohort_deals = _with_line_and_segment_totals(
        outcomes.with_columns(
            cohort_month=pl.col("entered_funnel_at").dt.date().dt.truncate("1mo"),
            outcome=pl.col("status"),
            time_days=_days(pl.coalesce("won_at", "lost_at", watched_until) - pl.col("entered_funnel_at")),
        )
    ).with_columns(
        horizon_days=pl.min_horizontal(pl.lit(float(maturity_days)), _days(watched_until - month_start))
    )
    counts = cohort_deals.group_by(_COHORT_GROUP).agg(
        deal_count=pl.len(),
        won_count=(pl.col("outcome") == "won").sum(),
        lost_count=(pl.col("outcome") == "lost").sum(),
        open_count=(pl.col("outcome") == "open").sum(),
        won_amount_reporting=pl.when(pl.col("outcome") == "won").then("amount_reporting").sum(),
    )
    months = outcomes.select(
        cohort_month=pl.date_ranges(
            pl.col("entered_funnel_at").min().dt.date().dt.truncate("1mo"), pl.lit(as_of), "1mo"
        )
    ).explode("cohort_month")
    universe = line_segment_universe(deals, targets)
    return (
        months.join(universe, how="cross")
        .join(counts, on=_COHORT_GROUP, how="left")
        .join(_aalen_johansen(cohort_deals), on=_COHORT_GROUP, how="left")
        .with_columns(
            pl.col("deal_count", "won_count", "lost_count", "open_count").fill_null(0).cast(pl.Int64)
        )
        .with_columns(
            pl.col("won_amount_reporting").fill_null(0.0),
            won_share_observed=_ratio("won_count", "deal_count"),
            lost_share_observed=_ratio("lost_count", "deal_count"),
            open_share=_ratio("open_count", "deal_count"),
            # Mature once the youngest possible deal (entered at the month's end) had the full horizon.
            is_mature=_days(watched_until - month_end) >= maturity_days,
            estimate_horizon_days=pl.min_horizontal(
                pl.lit(float(maturity_days)), _days(watched_until - month_start)
            )
            .floor()
            .cast(pl.Int64),
        )
        .select(
            "cohort_month",
            "business_line",
            "segment",
            "deal_count",
            "won_count",
            "lost_count",
            "open_count",
            "won_amount_reporting",
            "won_share_observed",
            "lost_share_observed",
            "open_share",
            "is_mature",
            "estimate_horizon_days",
            "won_share_estimated",
            "lost_share_estimated",
        )
        .sort("cohort_month", "business_line", "segment")
    )


# ------------------------------------------------------------------------------------------- checks


def rates_out_of_range(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Rows where a rate column is outside [0, 1] (nulls pass: an unknown rate is not a wrong one)."""
    outside = pl.any_horizontal((pl.col(c) < 0) | (pl.col(c) > 1) for c in columns)
    return frame.filter(outside)


def rising_down_the_funnel(
    frame: pl.DataFrame,
    group: list[str],
    non_increasing: tuple[str, ...] = ("cumulative_conversion",),
    non_decreasing: tuple[str, ...] = ("conversion_to_won",),
    tolerance: float = 1e-9,
) -> pl.DataFrame:
    """Rows where, from one stage to the next within a group, a share of the first stage's deals rises
    or a conversion to won falls: a funnel can only narrow."""

    def previous(column: str) -> pl.Expr:
        return pl.col(column).shift(1).over(group, order_by="stage_number")

    widening = [pl.col(c) > previous(c) + tolerance for c in non_increasing]
    widening += [pl.col(c) < previous(c) - tolerance for c in non_decreasing]
    return frame.filter(pl.any_horizontal(widening))
