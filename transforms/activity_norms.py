"""Activity norms: the effort a deal consumes while it is in a stage, per business line x segment x stage x
activity type, for the team and for each owner.

- **Effort of an activity**: its logged duration, or the configured hours of its type when it has none
  (`transforms.client_base.effort_hours`, the same rule as the client-base effort figures).
- **Which stage an activity belongs to**: the deal's stay (`STAYS_SQL`, `activities_in_stays_sql`) it
  happened in: the latest stage the deal entered at or before the activity (of two entered at the same
  instant, the later event's). Work logged before the deal's first stage event belongs to its first
  stage (prospecting the lead); work after the deal was won or lost belongs to no stage.
- **Which deals**: the deals that reached the stage (any-stage, as in `funnel_conversion` and
  `lead_requirements`) in the trailing `window_months` and are decided there by the as-of date: *advanced*
  to the next shown stage, or *lost* at it. Open deals still in the stage are left out: their effort is not
  complete. A deal that skipped the stage counts with zero effort, because `lead_requirements` counts it
  among the deals that must reach the stage: norm x deals needed is then the effort the plan needs.
- **Norm** = mean activities (hours) per decided deal. Each level is shrunk toward the level above, worth
  `prior_deals` deals: segment toward its business line, owner toward the business line x segment (or the
  line on the all-segments rows): norm = (m x prior + sum) / (m + n). An owner with no decided deal in the
  window gets exactly the line's norm, with `has_history = false`.
- **Uncertainty**: the 90 % interval is norm -/+ z x sd / sqrt(n + m) (the group's sample standard
  deviation, the prior's below two deals), clipped at zero; `is_small_sample` flags n < `min_deals`.
- **Typical days in stage**: median days a decided deal spent in the stage (all its stays summed; skipped
  deals left out), the prior's below `min_deals` deals. The action plan spreads a deal's work over them.

Totals are rows marked '(all)': activity type (all types summed), segment (all segments of the line) and
owner (the team: every owner of the line).

Where it runs: the decided deal x stage x activity type rows and their statistics per level are
DuckDB SQL over the stage events and activities (`activity_norms_from_tables`); Polars shrinks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl
from scipy import stats

from transforms.client_base import SegmentationSettings, effort_hours_sql
from transforms.funnel import ALL, days_sql, funnel_stages, line_segment_pairs, materialize_deal_facts
from transforms.sql import Tables, date_literal, end_of_day_literal, frame_tables


def _default_hours_without_duration() -> dict[str, float]:
    return dict(SegmentationSettings().activity_hours_without_duration)


@dataclass(frozen=True)
class NormSettings:
    window_months: int = 12
    prior_deals: float = 10.0
    min_deals: int = 20
    interval: float = 0.9
    activity_hours_without_duration: dict[str, float] = field(default_factory=_default_hours_without_duration)
    default_activity_hours: float = SegmentationSettings().default_activity_hours


def months_before(as_of: date, months: int) -> date:
    return pl.select(pl.lit(as_of).dt.offset_by(f"-{months}mo")).item()


ACTIVITY_SOURCES = ("transitions", "dim_deals", "dim_clients", "activities")
"""The large inputs, read by SQL (`transforms.sql.Tables`): the funnel's deal sources and
staging.stg_crm__activities. Stages and owners are small Polars frames."""


def _hours_settings(settings: NormSettings) -> SegmentationSettings:
    return SegmentationSettings(
        activity_hours_without_duration=settings.activity_hours_without_duration,
        default_activity_hours=settings.default_activity_hours,
    )


EFFORT_SQL = """
    select activity_id, deal_id, owner_id, activity_type, occurred_at, {hours} as hours
    from {activities}
    where occurred_at < {end}
"""

STAYS_SQL = """
    select stays.deal_id, stays.to_stage_id as stage_id, stays.changed_at as entered_at,
        stays.transition_number, next_stays.changed_at as exited_at,
        stays.transition_number = 1 as is_first,
        stays.is_to_won or stays.is_to_lost as is_terminal
    from {events} as stays
    left join {events} as next_stays
        on stays.deal_id = next_stays.deal_id
        and next_stays.transition_number = stays.transition_number + 1
"""
"""One row per stay of a deal in a stage (terminal ones included): entered at, exited at (null while the
deal is still there: the next event's time, so a deal's stays tile its timeline), whether it is the
deal's first. A deal's transitions are numbered 1, 2, ... in time order (`transition_number`), so the
next event is a join on the number, not a window over every deal's events (which also kept a filter on
the deals from reaching the events)."""


def activity_effort(activities: pl.LazyFrame, as_of: date, settings: NormSettings) -> pl.LazyFrame:
    """The activities on or before the as-of date with their hours (`EFFORT_SQL`)."""
    with frame_tables({"activities": activities}) as t:
        define_effort(t, as_of, settings)
        return t.frame("select * from {effort}").lazy()


def define_effort(t: Tables, as_of: date, settings: NormSettings) -> None:
    """`{effort}`: the activities on or before the as-of date with their hours."""
    t.define(
        "effort",
        EFFORT_SQL,
        hours=effort_hours_sql(_hours_settings(settings)),
        end=end_of_day_literal(as_of),
    )


def define_activity_facts(t: Tables, as_of: date, settings: NormSettings) -> None:
    """`{effort}` (`define_effort`) and `{stays}`: every stay of a deal in a stage (`STAYS_SQL`, over
    `{events}`: `transforms.funnel.materialize_deal_facts`)."""
    define_effort(t, as_of, settings)
    t.define("stays", STAYS_SQL)


def activities_in_stays_sql(deals: str | None = None, effort: str = "{effort}") -> str:
    """Each deal activity of `effort` (of the deals in the subquery `deals`, or all) with the stay it
    belongs to: the latest stay entered at or before it (of two entered at the same instant, the later
    event's), the deal's first stay for work before it; work after close (a terminal stay) is dropped.
    Columns: deal_id, activity_type, hours, occurred_at, stage_id, stay_entered_at, stay_exited_at.

    A deal's stays tile its timeline ([entered, exited), the first one open to the past), so each
    activity falls in exactly one: a join on the deal, no sort of the activities."""
    only = f"where deal_id in ({deals})" if deals else ""
    # The same deals on both sides: the stays are the join's build side, and all of them do not fit in
    # DuckDB's memory at SF100.
    stays_of = f"and stays.deal_id in ({deals})" if deals else ""
    return f"""
        select effort.deal_id, effort.activity_type, effort.hours, effort.occurred_at, stays.stage_id,
            stays.entered_at as stay_entered_at, stays.exited_at as stay_exited_at
        from (select * from {effort} {only}) as effort
        inner join (
            select * from {{stays}} as stays where not stays.is_terminal {stays_of}
        ) as stays
            on effort.deal_id = stays.deal_id
            and (stays.is_first or effort.occurred_at >= stays.entered_at)
            and (stays.exited_at is null or effort.occurred_at < stays.exited_at)
    """


def _decided_reach_sql(reach: str, since: date) -> str:
    """Deals that reached an open stage of their own funnel since `since` and are decided there
    (advanced or lost)."""
    return f"""
        select reach.deal_id, reach.business_line, reach.segment, reach.stage_id, reach.stage_number,
            case when reach.has_advanced then 'advanced' else 'lost' end as outcome
        from ({reach}) as reach
        where reach.view_business_line = reach.business_line
            and cast(reach.reached_at as date) >= {date_literal(since)}
            and (coalesce(reach.has_advanced, false) or coalesce(reach.is_dropped, false))
    """


# The owners are joined to the few decided deal-stages, not to the reach of every deal: one large join
# per statement (at SF100 the two together ran out of DuckDB's 2 GB).
_DECIDED_WITH_OWNERS_SQL = """
    select decided.deal_id, decided.business_line, decided.segment,
        coalesce(owners.owner_id, 'unknown') as owner_id, decided.stage_id, decided.stage_number,
        decided.outcome
    from {decided_reach} as decided
    left join (
        select deal_id, owner_id from {dim_deals}
        where deal_id in (select deal_id from {decided_reach})
    ) as owners on decided.deal_id = owners.deal_id
"""


def materialize_decided_deal_stages(
    t: Tables, stages: pl.LazyFrame, as_of: date, settings: NormSettings
) -> str:
    """Temporary tables `{activity_types}` (of the activities up to the as-of date), `{decided}` (decided
    deal x open stage, with line, segment, owner, outcome and days in the stage) and `{stage_effort}`
    (their activities and effort per activity type and '(all)'), and returns the SQL of the decided deal
    x open stage x activity type rows ('(all)' included) with activities, effort and days in the stage.
    Effort is in whole seconds (`seconds`: each activity's hours x 3600, rounded; logged minutes and the
    configured hours give whole seconds), so its sums are exact integers and come out the same on every
    run, whatever order DuckDB's threads add them in."""
    reach = materialize_deal_facts(t, as_of, stages)
    define_activity_facts(t, as_of, settings)
    # The activities are a table (staging.stg_crm__activities): read where used, the decided deals' alone
    # for their effort, not copied whole first.
    t.materialize("activity_types", "select distinct activity_type from {effort}")
    watched = end_of_day_literal(as_of)
    t.materialize("decided_reach", _decided_reach_sql(reach, months_before(as_of, settings.window_months)))
    t.materialize("decided_stages", _DECIDED_WITH_OWNERS_SQL)
    # The decided deals' stays, once (their days and their activities read them).
    t.materialize("stays", "select * from {stays} where deal_id in (select deal_id from {decided_stages})")
    t.materialize(
        "decided",
        f"""
        select decided.*, coalesce(stage_days.days_in_stage, 0.0) as days_in_stage
        from {{decided_stages}} as decided
        left join (
            select deal_id, stage_id,
                fsum({days_sql(f"coalesce(exited_at, {watched})", "entered_at")}) as days_in_stage
            from {{stays}}
            where not is_terminal
            group by deal_id, stage_id
        ) as stage_days
            on decided.deal_id = stage_days.deal_id and decided.stage_id = stage_days.stage_id
        """,
    )
    # The decided deals' activities first, in a statement of their own: the stays are already theirs
    # (above), so the join that places each activity in its stay is the only large one in its statement
    # (with the two semi-joins on the decided deals in it, DuckDB ran out of its 2 GB at SF100).
    t.materialize("decided_effort", "select * from {effort} where deal_id in (select deal_id from {decided})")
    t.materialize(
        "stage_effort",
        f"""
        with per_type as (
            select deal_id, stage_id, activity_type, count(*) as activities,
                sum(cast(round(hours * 3600) as bigint)) as seconds
            from ({activities_in_stays_sql(effort="{decided_effort}")})
            group by deal_id, stage_id, activity_type
        )
        select * from per_type
        union all
        select deal_id, stage_id, '{ALL}' as activity_type, cast(sum(activities) as bigint),
            cast(sum(seconds) as bigint)
        from per_type
        group by deal_id, stage_id
        """,
    )
    return t.text(
        f"""
        select decided.deal_id, decided.business_line, decided.segment, decided.owner_id,
            decided.stage_id, decided.stage_number, decided.outcome, types.activity_type,
            coalesce(stage_effort.activities, 0) as activities,
            coalesce(stage_effort.seconds, 0) as seconds,
            decided.days_in_stage
        from {{decided}} as decided
        cross join (select activity_type from {{activity_types}} union all select '{ALL}') as types
        left join {{stage_effort}} as stage_effort
            on decided.deal_id = stage_effort.deal_id and decided.stage_id = stage_effort.stage_id
            and types.activity_type = stage_effort.activity_type
        """
    )


_STAT_KEYS = ["business_line", "segment", "owner_id", "stage_id", "activity_type"]


def _levels(keys: str) -> str:
    """Grouping sets: `keys`, and the same per segment, per owner and per both."""
    return f"grouping sets (({keys}), ({keys}, segment), ({keys}, owner_id), ({keys}, segment, owner_id))"


_LEVEL_LABELS = f"""
    case when grouping(segment) = 1 then '{ALL}' else segment end as segment,
    case when grouping(owner_id) = 1 then '{ALL}' else owner_id end as owner_id
"""


def _exact_sd_sql(column: str) -> str:
    """The sample standard deviation of an integer column, from its exact (HUGEINT) sums: the same on
    every run, which DuckDB's `stddev_samp` over a parallel aggregation of doubles is not (its last
    digits moved with the order the threads combined their parts), and exact up to the final rounding.
    Null below two rows, as `stddev_samp`."""
    n = "count(*)"
    total = f"sum(cast({column} as hugeint))"
    squares = f"sum(cast({column} as hugeint) * {column})"
    return (
        f"case when {n} > 1 then "
        f"sqrt(cast({n} * {squares} - {total} * {total} as double) / ({n} * ({n} - 1))) end"
    )


def _group_stats(t: Tables, deal_rows: str) -> pl.LazyFrame:
    """Per business line x stage x activity type, and the same per segment, per owner and per both
    ('(all)' where a level is not split): decided deals, sums, standard deviations and outcome means,
    and the median days in the stage (of the decided deals: the same for every activity type)."""
    return t.frame(
        f"""
        with by_type as (
            select business_line, stage_id, activity_type, {_LEVEL_LABELS},
                count(*) as decided_deal_count,
                count(*) filter (where outcome = 'advanced') as advanced_deal_count,
                count(*) filter (where outcome = 'lost') as lost_deal_count,
                cast(sum(activities) as bigint) as activities_sum,
                {_exact_sd_sql("activities")} as activities_sd,
                cast(sum(seconds) as double) / 3600 as hours_sum,
                {_exact_sd_sql("seconds")} / 3600 as hours_sd,
                avg(activities) filter (where outcome = 'advanced') as activities_per_advanced_deal,
                avg(activities) filter (where outcome = 'lost') as activities_per_lost_deal,
                avg(seconds) filter (where outcome = 'advanced') / 3600 as hours_per_advanced_deal,
                avg(seconds) filter (where outcome = 'lost') / 3600 as hours_per_lost_deal
            from ({deal_rows})
            group by {_levels("business_line, stage_id, activity_type")}
        ),
        days as (
            select business_line, stage_id, {_LEVEL_LABELS},
                median(days_in_stage) filter (where days_in_stage > 0) as days_median
            from {{decided}}
            group by {_levels("business_line, stage_id")}
        )
        select by_type.*, days.days_median
        from by_type
        left join days
            on by_type.business_line = days.business_line and by_type.stage_id = days.stage_id
            and by_type.segment = days.segment and by_type.owner_id = days.owner_id
        """
    ).lazy()


def _shrunk(rows: pl.LazyFrame, prior: pl.LazyFrame | None, settings: NormSettings) -> pl.LazyFrame:
    """Norms of `rows` (universe keys + group stats) shrunk toward `prior` (norms one level up, joined on
    `prior_segment`); no prior: the group's own means."""
    z = float(stats.norm.ppf(0.5 + settings.interval / 2))
    if prior is None:
        rows = rows.with_columns(
            pl.lit(None, pl.Float64).alias(c)
            for c in (
                "activities_per_deal_prior",
                "activities_sd_prior",
                "hours_per_deal_prior",
                "hours_sd_prior",
                "typical_days_prior",
            )
        )
        m = pl.lit(0.0)
    else:
        rows = rows.join(
            prior.select(
                "business_line",
                pl.col("segment").alias("prior_segment"),
                "stage_id",
                "activity_type",
                activities_per_deal_prior="activities_per_deal",
                activities_sd_prior="activities_sd_used",
                hours_per_deal_prior="hours_per_deal",
                hours_sd_prior="hours_sd_used",
                typical_days_prior="typical_days_in_stage",
            ),
            on=["business_line", "prior_segment", "stage_id", "activity_type"],
            how="left",
        )
        m = (
            pl.when(pl.col("activities_per_deal_prior").is_not_null())
            .then(settings.prior_deals)
            .otherwise(0.0)
        )
    n = pl.col("decided_deal_count")
    small = n < settings.min_deals
    out = rows.with_columns(_m=m).with_columns(
        activities_per_deal_observed=pl.when(n > 0).then(pl.col("activities_sum") / n),
        hours_per_deal_observed=pl.when(n > 0).then(pl.col("hours_sum") / n),
        # n = 0: exactly the prior (an owner without history carries the line's norm, to the last bit).
        activities_per_deal=pl.when(n == 0)
        .then(pl.col("activities_per_deal_prior"))
        .when(n + pl.col("_m") > 0)
        .then(
            (pl.col("_m") * pl.col("activities_per_deal_prior").fill_null(0.0) + pl.col("activities_sum"))
            / (n + pl.col("_m"))
        ),
        hours_per_deal=pl.when(n == 0)
        .then(pl.col("hours_per_deal_prior"))
        .when(n + pl.col("_m") > 0)
        .then(
            (pl.col("_m") * pl.col("hours_per_deal_prior").fill_null(0.0) + pl.col("hours_sum"))
            / (n + pl.col("_m"))
        ),
        activities_sd_used=pl.when(n >= 2)
        .then(pl.col("activities_sd"))
        .otherwise(pl.col("activities_sd_prior")),
        hours_sd_used=pl.when(n >= 2).then(pl.col("hours_sd")).otherwise(pl.col("hours_sd_prior")),
        typical_days_in_stage=pl.when(small & pl.col("typical_days_prior").is_not_null())
        .then(pl.col("typical_days_prior"))
        .otherwise(pl.col("days_median")),
    )
    half = {
        name: z * pl.col(f"{name}_sd_used") / (n + pl.col("_m")).sqrt() for name in ("activities", "hours")
    }
    return out.with_columns(
        activities_per_deal_low=(pl.col("activities_per_deal") - half["activities"]).clip(lower_bound=0.0),
        activities_per_deal_high=pl.col("activities_per_deal") + half["activities"],
        hours_per_deal_low=(pl.col("hours_per_deal") - half["hours"]).clip(lower_bound=0.0),
        hours_per_deal_high=pl.col("hours_per_deal") + half["hours"],
        is_small_sample=small,
        has_history=n > 0,
    ).drop("_m")


NORM_COLUMNS = [
    "business_line",
    "segment",
    "stage_number",
    "stage_id",
    "activity_type",
    "owner_id",
    "owner_name",
    "decided_deal_count",
    "advanced_deal_count",
    "lost_deal_count",
    "activities_per_deal_observed",
    "activities_per_deal",
    "activities_per_deal_low",
    "activities_per_deal_high",
    "hours_per_deal_observed",
    "hours_per_deal",
    "hours_per_deal_low",
    "hours_per_deal_high",
    "activities_per_advanced_deal",
    "activities_per_lost_deal",
    "hours_per_advanced_deal",
    "hours_per_lost_deal",
    "typical_days_in_stage",
    "prior_level",
    "is_small_sample",
    "has_history",
]


def norms_from_stats(
    stats_frames: pl.LazyFrame, universe: pl.LazyFrame, owners: pl.LazyFrame, settings: NormSettings
) -> pl.LazyFrame:
    """Norms at every level from the group statistics of the decided deal x stage x activity type rows
    (`_group_stats`). `universe` holds the rows to show: business_line, segment, owner_id, stage_id,
    stage_number, activity_type ('(all)' segment / owner rows included), so an owner without history
    gets a row."""
    counts = ["decided_deal_count", "advanced_deal_count", "lost_deal_count", "activities_sum"]
    rows = (
        universe.join(stats_frames, on=_STAT_KEYS, how="left")
        .with_columns(pl.col(counts).fill_null(0).cast(pl.Int64), pl.col("hours_sum").fill_null(0.0))
        .with_columns(
            prior_segment=pl.when(pl.col("owner_id") == ALL).then(pl.lit(ALL)).otherwise("segment"),
            is_owner_row=pl.col("owner_id") != ALL,
            is_segment_row=pl.col("segment") != ALL,
        )
        .cache()
    )
    line = _shrunk(rows.filter(~pl.col("is_owner_row") & ~pl.col("is_segment_row")), None, settings).cache()
    segment = _shrunk(rows.filter(~pl.col("is_owner_row") & pl.col("is_segment_row")), line, settings)
    team = pl.concat([line, segment], how="diagonal").cache()
    # Owners shrink toward the team norm of the same segment (the line's on the all-segments rows).
    owner = _shrunk(
        rows.filter(pl.col("is_owner_row")).with_columns(prior_segment=pl.col("segment")),
        team,
        settings,
    )
    names = owners.select("owner_id", "owner_name").unique("owner_id")
    return (
        pl.concat([team, owner], how="diagonal")
        .join(names, on="owner_id", how="left")
        .with_columns(
            prior_level=pl.when(pl.col("is_owner_row") & pl.col("is_segment_row"))
            .then(pl.lit("business_line_segment"))
            .when(pl.col("is_owner_row") | pl.col("is_segment_row"))
            .then(pl.lit("business_line"))
        )
        .select(NORM_COLUMNS)
        .sort("business_line", "segment", "owner_id", "stage_number", "activity_type")
    )


def norm_universe(
    deal_rows: pl.LazyFrame,
    deals: pl.LazyFrame,
    owners: pl.LazyFrame,
    stages: pl.LazyFrame,
    activity_types: pl.LazyFrame,
) -> pl.LazyFrame:
    """Rows every norm table shows: each business line x segment with a deal (and '(all)') x open shown
    stage x activity type (and '(all)') x the team ('(all)') and every active owner of the line plus any
    owner with decided deals in it."""
    shown = funnel_stages(stages).filter(
        (pl.col("view_business_line") == pl.col("pipeline_id")) & ~pl.col("is_won")
    )
    segments = deals.select("business_line", "segment").unique()
    segments = pl.concat([segments, segments.select("business_line", segment=pl.lit(ALL))]).unique()
    line_owners = pl.concat(
        [
            owners.filter(pl.col("is_active").fill_null(True)).select("business_line", "owner_id"),
            deal_rows.select("business_line", "owner_id"),
            segments.select("business_line", owner_id=pl.lit(ALL)),
        ]
    ).unique()
    types = pl.concat(
        [activity_types.select("activity_type"), pl.LazyFrame({"activity_type": [ALL]})]
    ).unique()
    return (
        segments.join(line_owners, on="business_line")
        .join(
            shown.select(pl.col("pipeline_id").alias("business_line"), "stage_id", "stage_number"),
            on="business_line",
        )
        .join(types, how="cross")
    )


def activity_norms(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    activities: pl.LazyFrame,
    owners: pl.LazyFrame,
    as_of: date,
    settings: NormSettings | None = None,
) -> pl.LazyFrame:
    """One row per business line x segment x open stage x activity type x owner ('(all)' totals: all
    segments, all types, the team)."""
    sources = {
        "transitions": transitions,
        "dim_deals": dim_deals,
        "dim_clients": dim_clients,
        "activities": activities,
    }
    with frame_tables(sources) as t:
        return activity_norms_from_tables(t, stages, owners, as_of, settings)


def activity_norms_from_tables(
    t: Tables,
    stages: pl.LazyFrame,
    owners: pl.LazyFrame,
    as_of: date,
    settings: NormSettings | None = None,
) -> pl.LazyFrame:
    """`activity_norms` with `ACTIVITY_SOURCES` bound in `t`: the decided deal x stage x activity rows and
    their group statistics are computed in DuckDB, the shrinkage and intervals in Polars."""
    settings = settings or NormSettings()
    deal_rows = materialize_decided_deal_stages(t, stages, as_of, settings)
    # Every decided row has an '(all)' activity row: the deal rows' owners are the decided deals'.
    deal_owner_lines = t.frame("select distinct business_line, owner_id from {decided}").lazy()
    types = t.frame("select activity_type from {activity_types}").lazy()
    universe = norm_universe(deal_owner_lines, line_segment_pairs(t).lazy(), owners, stages, types)
    return norms_from_stats(_group_stats(t, deal_rows), universe, owners, settings)
