"""Activity norms: the effort a deal consumes while it is in a stage, per business line x segment x stage x
activity type, for the team and for each owner.

- **Effort of an activity**: its logged duration, or the configured hours of its type when it has none
  (`transforms.client_base.effort_hours`, the same rule as the client-base effort figures).
- **Which stage an activity belongs to**: the deal's stay (`stage_stays`) it happened in: the latest stage
  the deal entered at or before the activity. Work logged before the deal's first stage event belongs to its
  first stage (prospecting the lead); work after the deal was won or lost belongs to no stage.
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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import polars as pl
from scipy import stats

from transforms.client_base import SegmentationSettings, effort_hours
from transforms.funnel import (
    ALL,
    deal_attributes,
    deal_events,
    deal_outcomes,
    deal_stage_reach,
    funnel_stages,
)

_DAY_SECONDS = 86_400.0


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


def end_of_day(day: date) -> pl.Expr:
    return pl.lit(day).dt.offset_by("1d").cast(pl.Datetime("us"))


def activity_effort(activities: pl.LazyFrame, as_of: date, settings: NormSettings) -> pl.LazyFrame:
    """The activities on or before the as-of date with their hours."""
    hours = effort_hours(
        activities,
        SegmentationSettings(
            activity_hours_without_duration=settings.activity_hours_without_duration,
            default_activity_hours=settings.default_activity_hours,
        ),
    )
    return activities.filter(pl.col("occurred_at") < end_of_day(as_of)).select(
        "activity_id", "deal_id", "owner_id", "activity_type", "occurred_at", hours=hours
    )


def stage_stays(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per stay of a deal in a stage (terminal ones included): entered at, exited at (null while
    the deal is still there)."""
    order = ["changed_at", "transition_number"]
    return events.with_columns(
        exited_at=pl.col("changed_at").shift(-1).over("deal_id", order_by=order),
        is_terminal=pl.col("is_to_won") | pl.col("is_to_lost"),
    ).select(
        "deal_id",
        pl.col("to_stage_id").alias("stage_id"),
        pl.col("changed_at").alias("entered_at"),
        "exited_at",
        "is_terminal",
    )


def activities_in_stays(effort: pl.LazyFrame, stays: pl.LazyFrame) -> pl.LazyFrame:
    """Each deal activity with the open-stage stay it belongs to (`stay_entered_at`, `stage_id`): the latest
    stay entered at or before it, the deal's first stay for work before it; work after close is dropped."""
    with_deal = effort.filter(pl.col("deal_id").is_not_null())
    keyed = stays.select("deal_id", "stage_id", "is_terminal", stay_entered_at="entered_at")
    first = keyed.sort("stay_entered_at").group_by("deal_id").first()
    matched = with_deal.sort("occurred_at").join_asof(
        keyed.sort("stay_entered_at"),
        left_on="occurred_at",
        right_on="stay_entered_at",
        by="deal_id",
        strategy="backward",
        check_sortedness=False,  # both sides sorted on the join key above
    )
    before_first = (
        matched.filter(pl.col("stay_entered_at").is_null())
        .drop("stage_id", "is_terminal", "stay_entered_at")
        .join(first, on="deal_id")
    )
    return (
        pl.concat([matched.filter(pl.col("stay_entered_at").is_not_null()), before_first], how="diagonal")
        .filter(~pl.col("is_terminal"))
        .drop("is_terminal")
    )


def deal_owners(dim_deals: pl.LazyFrame, dim_clients: pl.LazyFrame) -> pl.LazyFrame:
    """`deal_attributes` (line, segment, amount) with the deal's owner."""
    return deal_attributes(dim_deals, dim_clients).join(
        dim_deals.select("deal_id", "owner_id"), on="deal_id", how="left"
    )


def decided_deal_stages(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    activities: pl.LazyFrame,
    as_of: date,
    settings: NormSettings,
) -> pl.LazyFrame:
    """One row per decided deal x open stage x activity type ('(all)' included): line, segment, owner,
    outcome at the stage (advanced / lost), activities and hours while in it, days in it."""
    events = deal_events(transitions, as_of).cache()
    deals = deal_owners(dim_deals, dim_clients)
    outcomes = deal_outcomes(events, deals.drop("owner_id"))
    shown = funnel_stages(stages)
    since = months_before(as_of, settings.window_months)
    decided = (
        deal_stage_reach(events, outcomes, shown)
        .filter(
            (pl.col("view_business_line") == pl.col("business_line"))
            & (pl.col("reached_at").dt.date() >= since)
            & (pl.col("has_advanced").fill_null(False) | pl.col("is_dropped").fill_null(False))
        )
        .join(deals.select("deal_id", "owner_id"), on="deal_id", how="left")
        .select(
            "deal_id",
            "business_line",
            "segment",
            pl.col("owner_id").fill_null("unknown"),
            "stage_id",
            "stage_number",
            outcome=pl.when("has_advanced").then(pl.lit("advanced")).otherwise(pl.lit("lost")),
        )
    )
    stays = stage_stays(events).cache()
    watched_until = end_of_day(as_of)
    days = (
        stays.filter(~pl.col("is_terminal"))
        .group_by("deal_id", "stage_id")
        .agg(
            days_in_stage=(
                (pl.col("exited_at").fill_null(watched_until) - pl.col("entered_at")).dt.total_seconds(
                    fractional=True
                )
                / _DAY_SECONDS
            ).sum()
        )
    )
    effort = activity_effort(activities, as_of, settings)
    per_type = (
        activities_in_stays(effort, stays)
        .group_by("deal_id", "stage_id", "activity_type")
        .agg(activities=pl.len(), hours=pl.col("hours").sum())
    )
    types = pl.concat([effort.select("activity_type").unique(), pl.LazyFrame({"activity_type": [ALL]})])
    all_types = per_type.group_by("deal_id", "stage_id").agg(
        pl.lit(ALL).alias("activity_type"), pl.col("activities").sum(), pl.col("hours").sum()
    )
    return (
        decided.join(types, how="cross")
        .join(pl.concat([per_type, all_types]), on=["deal_id", "stage_id", "activity_type"], how="left")
        .join(days, on=["deal_id", "stage_id"], how="left")
        .with_columns(
            pl.col("activities").fill_null(0).cast(pl.Int64),
            pl.col("hours").fill_null(0.0),
            pl.col("days_in_stage").fill_null(0.0),
        )
    )


_STAT_KEYS = ["business_line", "segment", "owner_id", "stage_id", "activity_type"]


def _group_stats(deal_rows: pl.LazyFrame, by_segment: bool, by_owner: bool) -> pl.LazyFrame:
    keys = ["business_line", "stage_id", "activity_type"]
    keys += ["segment"] if by_segment else []
    keys += ["owner_id"] if by_owner else []
    advanced = pl.col("outcome") == "advanced"
    lost = pl.col("outcome") == "lost"
    return (
        deal_rows.group_by(keys)
        .agg(
            decided_deal_count=pl.len(),
            advanced_deal_count=advanced.sum(),
            lost_deal_count=lost.sum(),
            activities_sum=pl.col("activities").sum(),
            activities_sd=pl.col("activities").std(),
            hours_sum=pl.col("hours").sum(),
            hours_sd=pl.col("hours").std(),
            activities_per_advanced_deal=pl.col("activities").filter(advanced).mean(),
            activities_per_lost_deal=pl.col("activities").filter(lost).mean(),
            hours_per_advanced_deal=pl.col("hours").filter(advanced).mean(),
            hours_per_lost_deal=pl.col("hours").filter(lost).mean(),
            days_median=pl.col("days_in_stage").filter(pl.col("days_in_stage") > 0).median(),
        )
        .with_columns(
            pl.lit(ALL).alias(c) for c, used in (("segment", by_segment), ("owner_id", by_owner)) if not used
        )
    )


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


def norms_from_deal_stages(
    deal_rows: pl.LazyFrame, universe: pl.LazyFrame, owners: pl.LazyFrame, settings: NormSettings
) -> pl.LazyFrame:
    """Norms at every level from one row per decided deal x stage x activity type (`decided_deal_stages`).
    `universe` holds the rows to show: business_line, segment, owner_id, stage_id, stage_number,
    activity_type ('(all)' segment / owner rows included), so an owner without history gets a row."""
    stats_frames = pl.concat(
        [_group_stats(deal_rows, by_segment=s, by_owner=o) for s in (False, True) for o in (False, True)],
        how="diagonal",
    )
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
    settings = settings or NormSettings()
    deal_rows = decided_deal_stages(
        transitions, dim_deals, dim_clients, stages, activities, as_of, settings
    ).cache()
    deals = deal_attributes(dim_deals, dim_clients)
    types = activity_effort(activities, as_of, settings).select("activity_type").unique()
    universe = norm_universe(deal_rows, deals, owners, stages, types)
    return norms_from_deal_stages(deal_rows, universe, owners, settings)
