"""Action plan: from the lead requirements to each owner's weekly work, and today's list of deals that need
an action. The norms (activities and hours a deal consumes per stage) are in `transforms.activity_norms`.

**Weekly plan** (`action_plan`), for every target period not over by the as-of date (or one chosen
period), so a week carries the late stages of the running period and the early stages of the next ones:

- *Deals entering a stage*: `lead_requirements.deals_needed` for the line x segment x stage, spread evenly
  over the days of its entry window [`must_enter_from_date`, `must_enter_by_date`] (the period itself when
  the requirement has no timing), summed per week (weeks start on Monday). Summed over weeks and owners
  this is `deals_needed` again: the plan reconciles with the lead requirements (a blocking check).
  `deals_needed` is the gross requirement (before the open pipeline's credit): the deals already open still
  have to pass the later stages, and that work is in the plan.
- *Work*: a deal entering a stage is worked on over the stage's typical days (`activity_norms`, at least
  one day), evenly; `deal_work` is the share of deals' stage work falling in the week, and planned
  activities / hours = deal_work x the owner's norm per deal of the stage and activity type.
- *Owner's share* of a line x segment requirement: the active owners of the line (`stg_crm__owners`)
  split it by their share of the line x segment's deals that entered the funnel in the last
  `share_window_months`. An active owner with no deal of the line in that window (a new owner) takes an
  equal share 1 / (active owners of the line), the others' history shares are scaled down to make room.
  A segment none of the line's active owners has worked is split equally. Without an active owner the row
  is `(unassigned)`. Owners with no history in a stage x segment use the team's (line x segment) norm,
  flagged `is_norm_from_line`.
- *Capacity*: the owner's own throughput, the `capacity_quantile` (P80) of their weekly hours and
  activities over the last `throughput_weeks` complete weeks (zero weeks included, counted from the
  owner's first activity). An owner with no activity gets the median capacity of the line's owners,
  flagged. Utilisation = the larger of planned / capacity for hours and for activities; status is
  `feasible` below `tight_threshold`, `tight` below `overloaded_threshold`, else `overloaded`.
- *Where load should shift*: within a line and week, hours above an owner's capacity go to owners with
  spare capacity (up to `tight_threshold` x their capacity), in proportion to their spare hours. What the
  team cannot absorb stays `unabsorbed_excess_hours`; for it, the plan names the owner's segment that week
  with the least value per hour of work and the line's segment with the most, and the hours the same
  revenue would need there. Value per hour = value per lead (`segment_focus`) / hours of work per lead
  (sum over stages of deals reaching the stage per lead x the team's hours per deal). The value per
  lead is `segment_focus`'s (its focus period; `lead_requirements` learns one set of rates for all periods).
- Weeks that ended before the as-of date stay in the plan (`is_past_week`) so every period reconciles;
  their figures say what the plan needed then, not what can still be done.

**Deals needing action** (`deals_needing_action`): open deals (last stage event on or before the as-of date
not won or lost) for which at least one of these holds, in whole days as `dim_deals` counts them:

- *SLA*: days in the current stage > the stage's `sla_days` (as `dim_deals.is_sla_breached`);
- *usual time*: days in stage > the `usual_quantile` (P80) of the completed stays in that line x segment x
  stage that ended in the last `window_months` (the line x stage's when fewer than `min_stays`);
- *idle*: days since the last activity on the deal, or since it entered its stage if later, > the
  `idle_quantile` (P80) of the quiet gaps in completed stays of the same line x segment x stage (from entry
  to the first activity, between activities, from the last one to exit; the line x stage's when fewer than
  `min_stays` stays).

Each row says by how many days each rule is overdue and is ordered per owner by expected value at risk:
`pipeline_forecast_deals.expected_won_amount` when given, else amount x the stage's win probability.

Where it runs: owner deal counts, weekly throughput, stays and quiet gaps with their quantiles are
DuckDB SQL over the stage events and activities (`*_from_tables`); the weekly plan and today's list
are built in Polars from those aggregates and the marts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import polars as pl

from transforms.activity_norms import (
    NormSettings,
    define_activity_facts,
    define_effort,
    months_before,
)
from transforms.exact import exact_sum
from transforms.funnel import ALL, DEALS_SQL, EVENTS_SQL, days_sql, materialize_deal_facts
from transforms.sql import Tables, date_literal, end_of_day_literal, frame_tables, timestamp_literal

UNASSIGNED = "(unassigned)"
_LINE_SEGMENT = ["business_line", "segment"]
_STAGE = ["business_line", "segment", "stage_id"]
PLAN_SCALE = 1e12
"""The plan's float sums (deals, hours, activities) are exact to 1e-12 (`transforms.exact`): a re-run on the
same data gives the same plan to the last bit, and a republished plan changes only where it did."""


@dataclass(frozen=True)
class PlanSettings:
    share_window_months: int = 12
    throughput_weeks: int = 26
    capacity_quantile: float = 0.8
    tight_threshold: float = 0.85
    overloaded_threshold: float = 1.0


@dataclass(frozen=True)
class ActionSettings:
    window_months: int = 12
    usual_quantile: float = 0.8
    idle_quantile: float = 0.8
    min_stays: int = 10


# ------------------------------------------------------------------------------------------ weekly plan


def weekly_requirements(requirements: pl.LazyFrame, stage_days: pl.LazyFrame) -> pl.LazyFrame:
    """One row per target period x business line x segment x stage x week: deals that must enter the
    stage that week (`deals_entering`) and the share of the deals' work in the stage falling in it
    (`deal_work`).
    `stage_days`: business_line, segment, stage_id, typical_days_in_stage."""
    per_day = (
        requirements.filter(pl.col("deals_needed").is_not_null())
        .join(stage_days, on=_STAGE, how="left")
        .with_columns(
            entry_from=pl.coalesce("must_enter_from_date", "period_start"),
            entry_by=pl.coalesce("must_enter_by_date", "period_end"),
            work_days=pl.col("typical_days_in_stage")
            .round(0)
            .fill_null(1.0)
            .clip(lower_bound=1.0)
            .cast(pl.Int64),
        )
        .with_columns(
            deals_per_day=pl.col("deals_needed")
            / ((pl.col("entry_by") - pl.col("entry_from")).dt.total_days() + 1),
            entry_day=pl.date_ranges("entry_from", "entry_by"),
        )
        .explode("entry_day")
        .select("period_start", *_STAGE, "stage_number", "entry_day", "deals_per_day", "work_days")
        .cache()
    )
    keys = ["period_start", *_STAGE, "stage_number", "week_start"]
    entering = (
        per_day.with_columns(week_start=pl.col("entry_day").dt.truncate("1w"))
        .group_by(keys)
        .agg(deals_entering=exact_sum(pl.col("deals_per_day"), PLAN_SCALE))
    )
    work = (
        per_day.with_columns(offset=pl.int_ranges(0, "work_days"))
        .explode("offset")
        .with_columns(
            week_start=(pl.col("entry_day") + pl.duration(days=pl.col("offset"))).dt.truncate("1w"),
            share=pl.col("deals_per_day") / pl.col("work_days"),
        )
        .group_by(keys)
        .agg(deal_work=exact_sum(pl.col("share"), PLAN_SCALE))
    )
    return entering.join(work, on=keys, how="full", coalesce=True).with_columns(
        pl.col("deals_entering", "deal_work").fill_null(0.0)
    )


def owner_shares(pairs: pl.LazyFrame, deal_counts: pl.LazyFrame, owners: pl.LazyFrame) -> pl.LazyFrame:
    """One row per business line x segment (of `pairs`) x owner: the owner's share of its requirement and
    the basis of the share. `deal_counts`: business_line, segment, owner_id, owner_deals (deals that
    entered the funnel in the share window, `_owner_deal_counts`)."""
    active = owners.filter(pl.col("is_active").fill_null(True)).select("owner_id", "business_line")
    history = deal_counts.join(active, on=["owner_id", "business_line"]).select(
        "business_line", "segment", "owner_id", "owner_deals"
    )
    line_owners = active.join(
        history.group_by("business_line", "owner_id").agg(line_deals=pl.col("owner_deals").sum()),
        on=["business_line", "owner_id"],
        how="left",
    ).with_columns(
        is_new_owner=pl.col("line_deals").is_null(),
        active_owners=pl.len().over("business_line"),
        new_owners=pl.col("line_deals").is_null().sum().over("business_line"),
    )
    assigned = (
        pairs.join(line_owners, on="business_line")
        .join(history, on=["business_line", "segment", "owner_id"], how="left")
        .with_columns(pl.col("owner_deals").fill_null(0))
        .with_columns(segment_deals=pl.col("owner_deals").sum().over(_LINE_SEGMENT))
        .with_columns(
            owner_share=pl.when(pl.col("is_new_owner") | (pl.col("segment_deals") == 0))
            .then(1.0 / pl.col("active_owners"))
            .otherwise(
                (pl.col("active_owners") - pl.col("new_owners"))
                / pl.col("active_owners")
                * pl.col("owner_deals")
                / pl.col("segment_deals")
            ),
            share_basis=pl.when(pl.col("is_new_owner"))
            .then(pl.lit("new_owner_equal_share"))
            .when(pl.col("segment_deals") == 0)
            .then(pl.lit("no_segment_history_equal_share"))
            .otherwise(pl.lit("history")),
        )
        .select(*_LINE_SEGMENT, "owner_id", "owner_deals", "owner_share", "share_basis")
    )
    unassigned = pairs.join(active, on="business_line", how="anti").select(
        *_LINE_SEGMENT,
        owner_id=pl.lit(UNASSIGNED),
        owner_deals=pl.lit(0, pl.Int64),
        owner_share=pl.lit(1.0),
        share_basis=pl.lit("no_active_owner"),
    )
    return pl.concat([assigned.with_columns(pl.col("owner_deals").cast(pl.Int64)), unassigned])


def owner_throughput(
    effort: pl.LazyFrame, owners: pl.LazyFrame, as_of: date, settings: PlanSettings
) -> pl.LazyFrame:
    """One row per owner of `owners`: capacity (the quantile of weekly hours and activities over the
    complete weeks of the window, zero weeks included from the owner's first activity); owners without
    activity get their line's median owner capacity, flagged. `effort`: owner_id, occurred_at, hours."""
    weekly = (
        effort.filter(pl.col("owner_id").is_not_null())
        .with_columns(week_start=pl.col("occurred_at").dt.date().dt.truncate("1w"))
        .group_by("owner_id", "week_start")
        .agg(hours=exact_sum(pl.col("hours"), 3600.0), activities=pl.len())
    )
    return throughput_from_weeks(weekly, owners, as_of, settings)


WEEKLY_EFFORT_SQL = """
    select owner_id, cast(date_trunc('week', occurred_at) as date) as week_start,
        cast(sum(cast(round(hours * 3600) as bigint)) as double) / 3600 as hours, count(*) as activities
    from {effort}
    where owner_id is not null
    group by owner_id, week_start
"""
"""Hours and activities per owner x week (Monday) from `{effort}`: the input of `throughput_from_weeks`.
Hours are summed in whole seconds (an activity's effort is whole seconds), exactly."""


def throughput_from_weeks(
    weekly: pl.LazyFrame, owners: pl.LazyFrame, as_of: date, settings: PlanSettings
) -> pl.LazyFrame:
    """`owner_throughput` from the owners' weekly hours and activities (owner_id, week_start, hours,
    activities)."""
    current_week = pl.lit(as_of).dt.truncate("1w")
    window_start = current_week.dt.offset_by(f"-{settings.throughput_weeks}w")
    last_week = current_week.dt.offset_by("-1w")
    weeks = (
        weekly.group_by("owner_id")
        .agg(first_week=pl.col("week_start").min())
        .with_columns(
            week_start=pl.date_ranges(pl.max_horizontal("first_week", window_start), last_week, "1w")
        )
        .explode("week_start")
        .filter(pl.col("week_start").is_not_null())
        .join(weekly, on=["owner_id", "week_start"], how="left")
        .with_columns(pl.col("hours").fill_null(0.0), pl.col("activities").fill_null(0))
    )
    q = settings.capacity_quantile
    own = weeks.group_by("owner_id").agg(
        throughput_weeks=pl.len(),
        own_hours=pl.col("hours").quantile(q, interpolation="linear"),
        own_activities=pl.col("activities").cast(pl.Float64).quantile(q, interpolation="linear"),
        median_hours_per_week=pl.col("hours").median(),
    )
    return (
        owners.select("owner_id", "business_line")
        .join(own, on="owner_id", how="left")
        .with_columns(
            line_hours=pl.col("own_hours").median().over("business_line"),
            line_activities=pl.col("own_activities").median().over("business_line"),
        )
        .select(
            "owner_id",
            pl.col("throughput_weeks").fill_null(0).cast(pl.Int64),
            capacity_hours_per_week=pl.coalesce("own_hours", "line_hours"),
            capacity_activities_per_week=pl.coalesce("own_activities", "line_activities"),
            median_hours_per_week="median_hours_per_week",
            is_capacity_from_line=pl.col("own_hours").is_null(),
        )
    )


def segment_value_per_hour(
    requirements: pl.LazyFrame, team_hours: pl.LazyFrame, value_per_lead: pl.LazyFrame
) -> pl.LazyFrame:
    """Per business line x segment: hours of work one lead brings (deals reaching each stage per lead x
    the team's hours per deal there) and value per hour = value per lead / those hours."""
    return (
        requirements.filter(pl.col("leads_needed") > 0)
        .join(team_hours, on=_STAGE, how="left")
        .group_by(_LINE_SEGMENT)
        .agg(
            hours_per_lead=exact_sum(
                pl.col("deals_needed") / pl.col("leads_needed") * pl.col("hours_per_deal").fill_null(0.0),
                PLAN_SCALE,
            )
        )
        .join(value_per_lead, on=_LINE_SEGMENT, how="left")
        .with_columns(
            value_per_hour_reporting=pl.when(pl.col("hours_per_lead") > 0).then(
                pl.col("value_per_lead_reporting") / pl.col("hours_per_lead")
            )
        )
    )


def owner_week_load(rows: pl.LazyFrame, capacity: pl.LazyFrame, settings: PlanSettings) -> pl.LazyFrame:
    """One row per owner x week: planned load, capacity, utilisation, status and the hours to shift to
    other owners of the line (or received from them)."""
    weeks = (
        rows.filter(pl.col("activity_type") == ALL)
        .group_by("owner_id", "business_line", "week_start")
        .agg(
            week_planned_hours=exact_sum(pl.col("planned_hours"), PLAN_SCALE),
            week_planned_activities=exact_sum(pl.col("planned_activities"), PLAN_SCALE),
        )
        .join(capacity, on="owner_id", how="left")
    )
    cap_h, cap_a = pl.col("capacity_hours_per_week"), pl.col("capacity_activities_per_week")
    utilisation = pl.max_horizontal(
        pl.when(cap_h > 0).then(pl.col("week_planned_hours") / cap_h),
        pl.when(cap_a > 0).then(pl.col("week_planned_activities") / cap_a),
    )
    line_week = ["business_line", "week_start"]
    return (
        weeks.with_columns(
            utilisation=pl.when((pl.col("week_planned_hours") > 0) | (pl.col("week_planned_activities") > 0))
            .then(utilisation)
            .otherwise(0.0)
        )
        .with_columns(
            status=pl.when(pl.col("owner_id") == UNASSIGNED)
            .then(pl.lit("unassigned"))
            .when(pl.col("utilisation").is_null())
            .then(pl.lit("overloaded"))  # work planned for an owner with no capacity at all
            .when(pl.col("utilisation") < settings.tight_threshold)
            .then(pl.lit("feasible"))
            .when(pl.col("utilisation") < settings.overloaded_threshold)
            .then(pl.lit("tight"))
            .otherwise(pl.lit("overloaded")),
            excess_hours=(pl.col("week_planned_hours") - cap_h.fill_null(0.0)).clip(lower_bound=0.0),
            spare_hours=(settings.tight_threshold * cap_h.fill_null(0.0) - pl.col("week_planned_hours")).clip(
                lower_bound=0.0
            ),
        )
        .with_columns(
            team_excess=exact_sum(pl.col("excess_hours"), PLAN_SCALE).over(line_week),
            team_spare=exact_sum(pl.col("spare_hours"), PLAN_SCALE).over(line_week),
            # the owner with the most spare hours, the first by id among equals (whatever the rows' order)
            top_receiver=pl.when(pl.col("spare_hours") > 0)
            .then("owner_id")
            .sort_by("spare_hours", "owner_id", descending=[True, False])
            .first()
            .over(line_week),
        )
        .with_columns(
            shift_to_owners_hours=pl.when(pl.col("team_excess") > 0)
            .then(
                pl.col("excess_hours") * pl.min_horizontal(1.0, pl.col("team_spare") / pl.col("team_excess"))
            )
            .otherwise(0.0),
            shift_from_owners_hours=pl.when(pl.col("team_spare") > 0)
            .then(
                pl.col("spare_hours") * pl.min_horizontal(1.0, pl.col("team_excess") / pl.col("team_spare"))
            )
            .otherwise(0.0),
        )
        .with_columns(
            shift_to_owner_id=pl.when(pl.col("shift_to_owners_hours") > 0).then(pl.col("top_receiver")),
            unabsorbed_excess_hours=pl.col("excess_hours") - pl.col("shift_to_owners_hours"),
        )
        .drop("team_excess", "team_spare", "top_receiver", "spare_hours")
    )


def _segment_shifts(rows: pl.LazyFrame, owner_weeks: pl.LazyFrame, value: pl.LazyFrame) -> pl.LazyFrame:
    """Per owner x week with hours the team cannot absorb: the owner's segment with the least value per
    hour that week, the line's segment with the most, and the hours the same revenue needs there instead."""
    owner_segments = (
        rows.filter((pl.col("activity_type") == ALL) & (pl.col("planned_hours") > 0))
        .group_by("owner_id", "week_start", *_LINE_SEGMENT)
        .agg(segment_hours=exact_sum(pl.col("planned_hours"), PLAN_SCALE))
        .join(value.select(*_LINE_SEGMENT, "value_per_hour_reporting"), on=_LINE_SEGMENT, how="left")
        .filter(pl.col("value_per_hour_reporting").is_not_null())
        .sort("value_per_hour_reporting", "segment")
        .group_by("owner_id", "week_start")
        .agg(
            shift_from_segment=pl.col("segment").first(),
            from_hours=pl.col("segment_hours").first(),
            from_value=pl.col("value_per_hour_reporting").first(),
        )
    )
    best = (
        value.filter(pl.col("value_per_hour_reporting").is_not_null())
        .sort("value_per_hour_reporting", "segment", descending=[True, False])
        .group_by("business_line")
        .agg(shift_to_segment=pl.col("segment").first(), to_value=pl.col("value_per_hour_reporting").first())
    )
    return (
        owner_weeks.filter(pl.col("unabsorbed_excess_hours") > 0)
        .select("owner_id", "business_line", "week_start", "unabsorbed_excess_hours")
        .join(owner_segments, on=["owner_id", "week_start"])
        .join(best, on="business_line")
        .filter(pl.col("shift_to_segment") != pl.col("shift_from_segment"))
        .select(
            "owner_id",
            "week_start",
            "shift_from_segment",
            "shift_to_segment",
            hours_saved_by_segment_shift=pl.min_horizontal("unabsorbed_excess_hours", "from_hours")
            * (1 - pl.col("from_value") / pl.col("to_value")),
        )
    )


PLAN_ORDER = [
    "owner_id",
    "week_start",
    "period_start",
    "business_line",
    "segment",
    "stage_number",
    "activity_type",
]
"""The order of the plan's rows (`action_plan_from_tables` leaves them unsorted: the writer sorts)."""

PLAN_COLUMNS = [
    "period_start",
    "period_end",
    "week_start",
    "is_past_week",
    "owner_id",
    "owner_name",
    "team",
    "business_line",
    "segment",
    "stage_number",
    "stage_id",
    "activity_type",
    "owner_share",
    "share_basis",
    "deals_entering",
    "deal_work",
    "activities_per_deal",
    "hours_per_deal",
    "is_norm_from_line",
    "planned_activities",
    "planned_hours",
    "segment_value_per_hour_reporting",
    "week_planned_hours",
    "week_planned_activities",
    "capacity_hours_per_week",
    "capacity_activities_per_week",
    "is_capacity_from_line",
    "utilisation",
    "status",
    "shift_to_owners_hours",
    "shift_to_owner_id",
    "shift_from_owners_hours",
    "unabsorbed_excess_hours",
    "shift_from_segment",
    "shift_to_segment",
    "hours_saved_by_segment_shift",
]


def _owner_deal_counts(t: Tables, since: date) -> pl.LazyFrame:
    """Deals that entered the funnel since `since`, per business line x segment x owner (dim_deals')."""
    return t.frame(
        f"""
        select outcomes.business_line, outcomes.segment, owners.owner_id, count(*) as owner_deals
        from {{outcomes}} as outcomes
        left join (select deal_id, owner_id from {{dim_deals}}) as owners
            on outcomes.deal_id = owners.deal_id
        where cast(outcomes.entered_funnel_at as date) >= {date_literal(since)}
        group by outcomes.business_line, outcomes.segment, owners.owner_id
        """
    ).lazy()


def action_plan(
    lead_requirements: pl.LazyFrame,
    norms: pl.LazyFrame,
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    activities: pl.LazyFrame,
    owners: pl.LazyFrame,
    value_per_lead: pl.LazyFrame,
    as_of: date,
    settings: PlanSettings | None = None,
    norm_settings: NormSettings | None = None,
    period_start: date | None = None,
) -> pl.LazyFrame:
    """One row per target period x owner x week x business line x segment x stage x activity type ('(all)'
    = all types), for the target periods not over by the as-of date (or the one starting `period_start`).
    `value_per_lead`: business_line, segment, value_per_lead_reporting (`marts.segment_focus`)."""
    sources = {
        "transitions": transitions,
        "dim_deals": dim_deals,
        "dim_clients": dim_clients,
        "activities": activities,
    }
    with frame_tables(sources) as t:
        return action_plan_from_tables(
            t, lead_requirements, norms, owners, value_per_lead, as_of, settings, norm_settings, period_start
        ).sort(PLAN_ORDER)


def action_plan_from_tables(
    t: Tables,
    lead_requirements: pl.LazyFrame,
    norms: pl.LazyFrame,
    owners: pl.LazyFrame,
    value_per_lead: pl.LazyFrame,
    as_of: date,
    settings: PlanSettings | None = None,
    norm_settings: NormSettings | None = None,
    period_start: date | None = None,
) -> pl.LazyFrame:
    """`action_plan` with `transforms.activity_norms.ACTIVITY_SOURCES` bound in `t`: the owners' deal
    counts and weekly throughput are aggregated in DuckDB, the plan built in Polars. Rows unsorted (the
    table is large: let the writer order them by `PLAN_ORDER`)."""
    settings = settings or PlanSettings()
    norm_settings = norm_settings or NormSettings()
    if period_start is None:
        requirements = lead_requirements.filter(pl.col("period_end") >= as_of)
    else:
        requirements = lead_requirements.filter(pl.col("period_start") == period_start)
    requirements = requirements.cache()
    team = norms.filter((pl.col("owner_id") == ALL) & (pl.col("segment") != ALL))
    stage_days = team.filter(pl.col("activity_type") == ALL).select(*_STAGE, "typical_days_in_stage")
    weekly = weekly_requirements(requirements, stage_days)

    materialize_deal_facts(t, as_of)
    define_effort(t, as_of, norm_settings)
    pairs = requirements.select(_LINE_SEGMENT).unique()
    deal_counts = _owner_deal_counts(t, months_before(as_of, settings.share_window_months))
    shares = owner_shares(pairs, deal_counts, owners).cache()
    types = norms.select("activity_type").unique()
    owner_norms = norms.filter(pl.col("owner_id") != ALL).select(
        *_STAGE,
        "activity_type",
        "owner_id",
        owner_activities="activities_per_deal",
        owner_hours="hours_per_deal",
        owner_has_history="has_history",
    )
    team_norms = team.select(
        *_STAGE, "activity_type", team_activities="activities_per_deal", team_hours="hours_per_deal"
    )
    rows = (
        weekly.join(shares, on=_LINE_SEGMENT)
        .join(types, how="cross")
        .join(owner_norms, on=[*_STAGE, "activity_type", "owner_id"], how="left")
        .join(team_norms, on=[*_STAGE, "activity_type"], how="left")
        .with_columns(
            activities_per_deal=pl.when(pl.col("owner_has_history"))
            .then("owner_activities")
            .otherwise("team_activities"),
            hours_per_deal=pl.when(pl.col("owner_has_history")).then("owner_hours").otherwise("team_hours"),
            is_norm_from_line=~pl.col("owner_has_history").fill_null(False),
            deals_entering=pl.col("deals_entering") * pl.col("owner_share"),
            deal_work=pl.col("deal_work") * pl.col("owner_share"),
        )
        .with_columns(
            planned_activities=(pl.col("deal_work") * pl.col("activities_per_deal")).fill_null(0.0),
            planned_hours=(pl.col("deal_work") * pl.col("hours_per_deal")).fill_null(0.0),
        )
        .cache()
    )
    capacity = throughput_from_weeks(
        t.frame(WEEKLY_EFFORT_SQL).lazy(),
        owners.select("owner_id", "business_line").unique("owner_id"),
        as_of,
        settings,
    )
    owner_weeks = owner_week_load(rows, capacity, settings).cache()
    value = segment_value_per_hour(
        requirements.filter(pl.col("period_start") == pl.col("period_start").min()),
        team_norms.filter(pl.col("activity_type") == ALL).select(*_STAGE, hours_per_deal="team_hours"),
        value_per_lead.select(*_LINE_SEGMENT, "value_per_lead_reporting"),
    )
    shifts = _segment_shifts(rows, owner_weeks, value)
    period = requirements.select("period_start", "period_end").unique()
    names = owners.select("owner_id", "owner_name", "team").unique("owner_id")
    return (
        rows.join(owner_weeks.drop("business_line"), on=["owner_id", "week_start"], how="left")
        .join(shifts, on=["owner_id", "week_start"], how="left")
        .join(
            value.select(*_LINE_SEGMENT, segment_value_per_hour_reporting="value_per_hour_reporting"),
            on=_LINE_SEGMENT,
            how="left",
        )
        .join(names, on="owner_id", how="left")
        .join(period, on="period_start", how="left")
        .with_columns(
            is_past_week=pl.col("week_start").dt.offset_by("1w") <= pl.lit(as_of),
            is_capacity_from_line=pl.col("is_capacity_from_line").fill_null(True),
        )
        .select(PLAN_COLUMNS)
    )


# ------------------------------------------------------------------------------- deals needing action


def _with_line_fallback(
    t: Tables, rows: str, value: str, quantile: float, min_stays: int, name: str
) -> pl.LazyFrame:
    """Per line x segment x stage of `rows` (a stored table, or a subquery of one, read twice): the
    quantile of `value`, the line x stage's when the line x segment x stage has fewer than `min_stays`
    distinct stays (deal_id, stay_entered).

    Exact quantiles keep every value of a group in memory (DuckDB cannot spill them): the two levels are
    two queries, so one copy of the values is held at a time."""
    q = float(quantile)
    by_segment = t.frame(
        f"""
        select business_line, segment, stage_id, quantile_cont({value}, {q!r}) as segment_value,
            count(distinct struct_pack(deal_id := deal_id, entered := stay_entered)) as stays
        from {rows}
        group by business_line, segment, stage_id
        """
    )
    by_line = t.frame(
        f"""
        select business_line, stage_id, quantile_cont({value}, {q!r}) as line_value
        from {rows}
        group by business_line, stage_id
        """
    )
    return (
        by_segment.lazy()
        .join(by_line.lazy(), on=["business_line", "stage_id"], how="inner")
        .select(
            "business_line",
            "segment",
            "stage_id",
            pl.coalesce(
                pl.when(pl.col("stays") >= int(min_stays)).then(pl.col("segment_value")),
                pl.col("line_value"),
            ).alias(name),
        )
    )


DEAL_ACTION_COLUMNS = [
    "owner_id",
    "owner_name",
    "team",
    "action_rank",
    "deal_id",
    "client_id",
    "business_line",
    "segment",
    "stage_id",
    "stage_entered_at",
    "days_in_stage",
    "sla_days",
    "sla_overdue_days",
    "usual_days_in_stage",
    "usual_time_overdue_days",
    "last_activity_at",
    "idle_days",
    "normal_idle_days",
    "idle_overdue_days",
    "is_sla_breached",
    "is_past_usual_time",
    "is_idle",
    "overdue_summary",
    "max_overdue_days",
    "expected_value_at_risk_reporting",
    "value_basis",
]


def quiet_gaps_sql(effort: str = "{effort}") -> str:
    """The quiet gaps of the stays in `{completed}`: between its entry, each activity of `effort` (deal_id,
    occurred_at) inside it and its exit, in time order. One row per gap: the stay (deal_id, stay_entered,
    stage_id), its business line and segment, and gap_days.

    An activity is inside a completed stay when entered_at <= occurred_at < exited_at: the stay
    `activities_in_stays_sql` gives it (at an instant with two stage changes, the later stay), less the
    work before the deal's first stay. The activities are joined to the completed stays alone, not to
    every stay and back, and each stay is numbered so the window runs on one integer key: about a third
    of the time at SF10."""
    return f"""
        with numbered as (
            select row_number() over () as stay, deal_id, entered_at, exited_at, stage_id, business_line,
                segment
            from {{completed}}
        ),
        points as (
            select stay, entered_at as happened_at from numbered
            union all
            select stay, exited_at from numbered
            union all
            select numbered.stay, effort.occurred_at
            from numbered
            inner join {effort} as effort
                on effort.deal_id = numbered.deal_id
                and effort.occurred_at >= numbered.entered_at and effort.occurred_at < numbered.exited_at
        ),
        ordered as (
            select stay, happened_at,
                lag(happened_at) over (partition by stay order by happened_at) as previous_at
            from points
        )
        select numbered.deal_id, numbered.entered_at as stay_entered, numbered.stage_id,
            numbered.business_line, numbered.segment, {days_sql("ordered.happened_at", "ordered.previous_at")}
                as gap_days
        from ordered
        inner join numbered on ordered.stay = numbered.stay
        where ordered.previous_at is not null
    """


def deals_needing_action(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    activities: pl.LazyFrame,
    owners: pl.LazyFrame,
    as_of: date,
    forecast_deals: pl.LazyFrame | None = None,
    settings: ActionSettings | None = None,
    norm_settings: NormSettings | None = None,
) -> pl.LazyFrame:
    """One row per open deal past its stage SLA, past the usual time in its stage, or idle for longer
    than is normal at its stage; ordered per owner by expected value at risk."""
    sources = {
        "transitions": transitions,
        "dim_deals": dim_deals,
        "dim_clients": dim_clients,
        "activities": activities,
    }
    with frame_tables(sources) as t:
        return deals_needing_action_from_tables(
            t, stages, owners, as_of, forecast_deals, settings, norm_settings
        )


def deals_needing_action_from_tables(
    t: Tables,
    stages: pl.LazyFrame,
    owners: pl.LazyFrame,
    as_of: date,
    forecast_deals: pl.LazyFrame | None = None,
    settings: ActionSettings | None = None,
    norm_settings: NormSettings | None = None,
) -> pl.LazyFrame:
    """`deals_needing_action` with `transforms.activity_norms.ACTIVITY_SOURCES` bound in `t`: stays,
    quiet gaps and their quantiles in DuckDB, today's open deals assembled in Polars."""
    settings = settings or ActionSettings()
    norm_settings = norm_settings or NormSettings()
    since = months_before(as_of, settings.window_months)
    t.define("events", EVENTS_SQL, end=end_of_day_literal(as_of))
    t.define("deals", DEALS_SQL)
    define_activity_facts(t, as_of, norm_settings)
    # Every stay, once (completed, today's and the activities' stays read it).
    t.materialize("stays", "select * from {stays}")
    # Stays of a line x segment x stage completed in the window.
    t.materialize(
        "completed",
        f"""
        select stays.deal_id, stays.entered_at, stays.exited_at, deals.business_line, deals.segment,
            stays.stage_id, {days_sql("stays.exited_at", "stays.entered_at")} as duration_days
        from {{stays}} as stays
        inner join {{deals}} as deals on stays.deal_id = deals.deal_id
        where not stays.is_terminal and stays.exited_at is not null
            and stays.exited_at >= {timestamp_literal(datetime.combine(since, time()))}
            and stays.exited_at < {end_of_day_literal(as_of)}
        """,
    )
    # Today's open deals: in a stage they have not left, not won or lost (the last event's stay).
    t.materialize(
        "current",
        """
        select stays.deal_id, deals.business_line, deals.segment, stays.stage_id,
            stays.entered_at as stage_entered_at, owners.owner_id, owners.client_id,
            deals.amount_reporting
        from {stays} as stays
        inner join {deals} as deals on stays.deal_id = deals.deal_id
        left join (select deal_id, owner_id, client_id from {dim_deals}) as owners
            on stays.deal_id = owners.deal_id
        where stays.exited_at is null and not stays.is_terminal
        """,
    )
    # The activities these deals had (one read of the activities).
    t.materialize(
        "deal_effort",
        """
        select deal_id, activity_type, hours, occurred_at from {effort}
        where deal_id in (select deal_id from {completed} union select deal_id from {current})
        """,
    )
    usual = _with_line_fallback(
        t,
        "(select *, entered_at as stay_entered from {completed})",
        "duration_days",
        settings.usual_quantile,
        settings.min_stays,
        "usual_days_in_stage",
    )
    # Stored once (it is read twice, and its window over every activity is the costly part).
    t.materialize(
        "quiet_gaps",
        quiet_gaps_sql("{deal_effort}"),
    )
    normal_idle = _with_line_fallback(
        t, "{quiet_gaps}", "gap_days", settings.idle_quantile, settings.min_stays, "normal_idle_days"
    )
    current = t.frame(
        """
        select current.*, last_activity.last_activity_at
        from {current} as current
        left join (
            select deal_id, max(occurred_at) as last_activity_at from {deal_effort} group by deal_id
        ) as last_activity on current.deal_id = last_activity.deal_id
        """
    ).lazy()
    catalogue = stages.select(
        pl.col("pipeline_id").alias("business_line"), "stage_id", "sla_days", "win_probability"
    )
    as_of_lit = pl.lit(as_of)
    if forecast_deals is None:
        forecast_deals = pl.LazyFrame(schema={"deal_id": pl.String, "expected_won_amount": pl.Float64})
    forecast = forecast_deals.select("deal_id", forecast_value=pl.col("expected_won_amount").cast(pl.Float64))
    names = owners.select("owner_id", "owner_name", "team").unique("owner_id")

    def overdue(days: pl.Expr, limit: str) -> pl.Expr:
        return pl.when(days > pl.col(limit)).then(days - pl.col(limit))

    return (
        current.join(catalogue, on=["business_line", "stage_id"], how="left")
        .join(usual, on=_STAGE, how="left")
        .join(normal_idle, on=_STAGE, how="left")
        .join(forecast, on="deal_id", how="left")
        .join(names, on="owner_id", how="left")
        .with_columns(
            days_in_stage=(as_of_lit - pl.col("stage_entered_at").dt.date()).dt.total_days(),
            idle_days=(
                as_of_lit - pl.max_horizontal("last_activity_at", "stage_entered_at").dt.date()
            ).dt.total_days(),
        )
        .with_columns(
            sla_overdue_days=overdue(pl.col("days_in_stage"), "sla_days").cast(pl.Float64),
            usual_time_overdue_days=overdue(pl.col("days_in_stage"), "usual_days_in_stage"),
            idle_overdue_days=overdue(pl.col("idle_days"), "normal_idle_days"),
        )
        .with_columns(
            is_sla_breached=pl.col("sla_overdue_days").is_not_null(),
            is_past_usual_time=pl.col("usual_time_overdue_days").is_not_null(),
            is_idle=pl.col("idle_overdue_days").is_not_null(),
            max_overdue_days=pl.max_horizontal(
                "sla_overdue_days", "usual_time_overdue_days", "idle_overdue_days"
            ),
            expected_value_at_risk_reporting=pl.coalesce(
                "forecast_value", pl.col("amount_reporting") * pl.col("win_probability")
            ),
            value_basis=pl.when(pl.col("forecast_value").is_not_null())
            .then(pl.lit("pipeline_forecast"))
            .when(pl.col("amount_reporting").is_not_null())
            .then(pl.lit("amount_x_stage_probability")),
        )
        .filter(pl.col("is_sla_breached") | pl.col("is_past_usual_time") | pl.col("is_idle"))
        .with_columns(
            overdue_summary=pl.concat_str(
                pl.when("is_sla_breached").then(pl.format("SLA +{}d", pl.col("sla_overdue_days").round(0))),
                pl.when("is_past_usual_time").then(
                    pl.format("usual time +{}d", pl.col("usual_time_overdue_days").round(1))
                ),
                pl.when("is_idle").then(pl.format("idle +{}d", pl.col("idle_overdue_days").round(1))),
                separator="; ",
                ignore_nulls=True,
            ),
        )
        .sort(
            ["owner_id", "expected_value_at_risk_reporting", "deal_id"],
            descending=[False, True, False],
            nulls_last=True,
        )
        .with_columns(action_rank=pl.int_range(1, pl.len() + 1).over("owner_id"))
        .select(DEAL_ACTION_COLUMNS)
    )
