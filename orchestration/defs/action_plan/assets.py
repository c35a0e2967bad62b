# ruff: noqa: E501 - one column description per line reads better than wrapped strings.
"""Action-plan tables in schema `marts`: activity norms, the weekly plan per owner, and today's deals that
need an action. Each asset reads the marts, calls one function of `transforms/`, writes the documented
table and shows its headline in the UI."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl

from ingestion.frames import read_frame, replace_table
from orchestration.defs.funnel.assets import (
    DEAL_FACTS_KEY,
    LEAD_REQUIREMENTS_KEY,
    SEGMENT_FOCUS_KEY,
    deal_facts_metadata,
    shared_deal_facts,
)
from orchestration.partitions import WRITER_POOL, partition_as_of
from orchestration.resources import WarehouseResource
from transforms.action_plan import (
    PLAN_ORDER,
    ActionSettings,
    PlanSettings,
    action_plan_from_tables,
    deals_needing_action_from_tables,
)
from transforms.activity_norms import ACTIVITY_SOURCES, NormSettings, activity_norms_from_tables
from transforms.sql import tables

ACTIVITY_NORMS_KEY = dg.AssetKey(["marts", "activity_norms"])
ACTION_PLAN_KEY = dg.AssetKey(["marts", "action_plan"])
DEALS_NEEDING_ACTION_KEY = dg.AssetKey(["marts", "deals_needing_action"])
PIPELINE_FORECAST_DEALS_KEY = dg.AssetKey(["marts", "pipeline_forecast_deals"])

# (schema, relation) of every dbt model the action plan reads.
SOURCES = {
    "transitions": ("marts", "fct_stage_transitions"),
    "dim_deals": ("marts", "dim_deals"),
    "dim_clients": ("marts", "dim_clients"),
    "stages": ("staging", "stg_crm__stages"),
    "activities": ("staging", "stg_crm__activities"),
    "owners": ("staging", "stg_crm__owners"),
}
SOURCE_KEYS = [dg.AssetKey(list(relation)) for relation in SOURCES.values()]

_NORMS = NormSettings()
_PLAN = PlanSettings()
_ACTION = ActionSettings()


class ActivityNormsConfig(dg.Config):
    window_months: int = _NORMS.window_months
    """Months of stage reaches before the as-of date the norms are learned from."""
    prior_deals: float = _NORMS.prior_deals
    """Pseudo-deals of the level above (line for a segment, team for an owner) a norm starts from."""
    min_deals: int = _NORMS.min_deals
    """Fewer decided deals than this: `is_small_sample`, and the typical days come from the level above."""
    interval: float = _NORMS.interval
    """Coverage of the norm intervals."""
    activity_hours_without_duration: dict[str, float] = _NORMS.activity_hours_without_duration
    """Hours counted for an activity of this type without a logged duration (as in client_segments)."""
    default_activity_hours: float = _NORMS.default_activity_hours
    """Hours of an activity of another type without duration."""

    def settings(self) -> NormSettings:
        return NormSettings(**self.model_dump())


class ActionPlanConfig(ActivityNormsConfig):
    share_window_months: int = _PLAN.share_window_months
    """Months of deals entering the funnel an owner's share of a line x segment is measured over."""
    throughput_weeks: int = _PLAN.throughput_weeks
    """Complete weeks before the as-of week an owner's capacity is measured over."""
    capacity_quantile: float = _PLAN.capacity_quantile
    """Capacity = this quantile of the owner's weekly hours (and activities): P80 by default."""
    tight_threshold: float = _PLAN.tight_threshold
    """Utilisation from which a week is `tight` (and up to which another owner can take load)."""
    overloaded_threshold: float = _PLAN.overloaded_threshold
    """Utilisation from which a week is `overloaded`."""
    period_start: str | None = None
    """Plan only the target period starting this day (YYYY-MM-DD); default every period not over yet."""

    def plan_settings(self) -> PlanSettings:
        return PlanSettings(**self.model_dump(include=set(PlanSettings.__dataclass_fields__)))

    def settings(self) -> NormSettings:
        return NormSettings(**self.model_dump(include=set(NormSettings.__dataclass_fields__)))


class DealsNeedingActionConfig(ActivityNormsConfig):
    usual_quantile: float = _ACTION.usual_quantile
    """A deal is past the usual time in stage beyond this quantile of completed stays (P80)."""
    idle_quantile: float = _ACTION.idle_quantile
    """A deal is idle beyond this quantile of the quiet gaps at its stage (P80)."""
    min_stays: int = _ACTION.min_stays
    """Completed stays a line x segment x stage needs for its own quantiles; below, the line x stage's."""

    def action_settings(self) -> ActionSettings:
        return ActionSettings(
            window_months=self.window_months,
            usual_quantile=self.usual_quantile,
            idle_quantile=self.idle_quantile,
            min_stays=self.min_stays,
        )

    def settings(self) -> NormSettings:
        return NormSettings(**self.model_dump(include=set(NormSettings.__dataclass_fields__)))


# ------------------------------------------------------------------------------------- descriptions

ACTIVITY_NORMS = (
    "One row per business line x segment x open stage x activity type x owner, totals marked '(all)' "
    "(all segments of the line, all activity types, owner '(all)' = the team); from "
    "staging.stg_crm__activities, marts.fct_stage_transitions and dim_deals. Activities and hours a deal "
    "consumes while in the stage, over the deals that reached it in the window and are decided there "
    "(advanced or lost); a deal that skipped the stage counts zero. Segment norms shrink toward the line, "
    "owner norms toward the team's: an owner without history has the line's norm and has_history = false."
)
ACTIVITY_NORMS_COLUMNS = {
    "business_line": "Business line (its pipeline).",
    "segment": "Client segment of the deals ('unknown' without a client); '(all)' = every segment of the line.",
    "stage_number": "Position of the stage among the line's shown stages (1 = first).",
    "stage_id": "Open stage of the pipeline.",
    "activity_type": "call, meeting, email or task; '(all)' = all types together.",
    "owner_id": "Owner of the deals; '(all)' = the team (every owner of the line).",
    "owner_name": "Owner's name (empty on team rows).",
    "decided_deal_count": "Deals that reached the stage in the window and advanced or were lost there by the as-of date (n).",
    "advanced_deal_count": "Of those, deals that reached the next stage.",
    "lost_deal_count": "Of those, deals lost at the stage.",
    "activities_per_deal_observed": "Activities of this type per decided deal while in the stage, as observed (empty without deals).",
    "activities_per_deal": "The norm: observed activities per deal shrunk toward the level above, (m x prior + sum) / (m + n).",
    "activities_per_deal_low": "Lower end of the 90 % interval of the norm (norm - z sd / sqrt(n + m), at least 0).",
    "activities_per_deal_high": "Upper end of that interval.",
    "hours_per_deal_observed": "Hours of those activities per decided deal (logged durations; configured hours per type without one).",
    "hours_per_deal": "The norm in hours, shrunk like activities_per_deal.",
    "hours_per_deal_low": "Lower end of the 90 % interval of hours_per_deal.",
    "hours_per_deal_high": "Upper end of that interval.",
    "activities_per_advanced_deal": "Activities per deal that advanced to the next stage (observed).",
    "activities_per_lost_deal": "Activities per deal lost at the stage (observed).",
    "hours_per_advanced_deal": "Hours per deal that advanced (observed).",
    "hours_per_lost_deal": "Hours per deal lost at the stage (observed).",
    "typical_days_in_stage": "Median days a decided deal spent in the stage (its stays summed); the level above's below min_deals deals.",
    "prior_level": "What the norm is shrunk toward: business_line (segment rows, owner rows of all segments), business_line_segment (owner rows of one segment); empty on the line rows.",
    "is_small_sample": "Fewer decided deals than min_deals (20): the norm leans on the level above; read it with its interval.",
    "has_history": "The group has at least one decided deal; false = an owner (or segment) with no history, whose norm is the level above's.",
}

ACTION_PLAN = (
    "One row per target period x owner x week (Monday) x business line x segment x stage x activity type "
    "('(all)' = all types), for the target periods not over by the as-of date; from marts.lead_requirements, "
    "activity_norms, segment_focus and the owners' activity history. deals_entering = the owner's share of "
    "lead_requirements.deals_needed spread over the stage's entry window: summed over owners and weeks (on "
    "activity_type '(all)' rows) it equals deals_needed. Owner-week figures (week_*, capacity, status, "
    "shifts) repeat on every row of the owner and week: do not sum them."
)
ACTION_PLAN_COLUMNS = {
    "period_start": "First day of the target period the work is for.",
    "period_end": "Last day of the target period.",
    "week_start": "Monday of the week (UTC).",
    "is_past_week": "The week ended before the as-of date: what the plan needed then.",
    "owner_id": "Sales owner; '(unassigned)' when the line has no active owner.",
    "owner_name": "Owner's name.",
    "team": "Owner's team.",
    "business_line": "Business line (its pipeline).",
    "segment": "Client segment.",
    "stage_number": "Position of the stage among the line's shown stages (won last).",
    "stage_id": "Stage the deals must enter (won = deals to win).",
    "activity_type": "call, meeting, email or task; '(all)' = all types together (use these rows for totals).",
    "owner_share": "Owner's share of the line x segment requirement: their share of its deals over the share window (new owners: 1 / active owners).",
    "share_basis": "history, new_owner_equal_share (no deal of the line in the window), no_segment_history_equal_share, or no_active_owner.",
    "deals_entering": "Deals the owner must bring into the stage this week (the same on every activity_type row of the stage).",
    "deal_work": "Deal-equivalents of the stage's work falling in this week (entries spread over the stage's typical days).",
    "activities_per_deal": "Norm used: the owner's activities of this type per deal in the stage (the team's when is_norm_from_line).",
    "hours_per_deal": "Norm used: the owner's hours per deal in the stage.",
    "is_norm_from_line": "The owner has no decided deal at this line x segment x stage: the team's (business line's) norm is used.",
    "planned_activities": "deal_work x activities_per_deal: activities of this type planned this week.",
    "planned_hours": "deal_work x hours_per_deal: hours of this type planned this week.",
    "segment_value_per_hour_reporting": "Value per lead (segment_focus) / hours of work per lead through the funnel: EUR of expected revenue per hour, for the row's line x segment.",
    "week_planned_hours": "Owner's planned hours in the week, all periods, segments and stages.",
    "week_planned_activities": "Owner's planned activities in the week.",
    "capacity_hours_per_week": "Owner's capacity: P80 of their weekly hours over the throughput window (the line's median owner when they have none).",
    "capacity_activities_per_week": "P80 of the owner's weekly activities.",
    "is_capacity_from_line": "The owner has no activity history: capacity is the line's median owner's.",
    "utilisation": "Larger of planned / capacity for hours and for activities.",
    "status": "feasible (utilisation < tight_threshold 0.85), tight (< overloaded_threshold 1.0), overloaded, or unassigned.",
    "shift_to_owners_hours": "Hours above capacity to hand to owners of the same line with spare capacity this week.",
    "shift_to_owner_id": "The line's owner with the most spare capacity this week (first receiver).",
    "shift_from_owners_hours": "Hours this owner can take from overloaded owners of the line this week.",
    "unabsorbed_excess_hours": "Hours above capacity the line's other owners cannot take.",
    "shift_from_segment": "With unabsorbed hours: the owner's segment this week whose work yields the least value per hour.",
    "shift_to_segment": "The line's segment whose work yields the most value per hour.",
    "hours_saved_by_segment_shift": "Hours the same expected revenue would need less if that work were in shift_to_segment instead.",
}

DEALS_NEEDING_ACTION = (
    "One row per open deal that needs an action today (the as-of date): past its stage SLA, past the usual "
    "time in its stage (P80 of completed stays of its line x segment x stage), or idle longer than is normal "
    "at its stage (P80 of the quiet gaps between activities there); from marts.fct_stage_transitions, "
    "dim_deals, staging.stg_crm__activities, stg_crm__stages and pipeline_forecast_deals when present. "
    "Ordered per owner by expected value at risk (action_rank 1 first)."
)
DEALS_NEEDING_ACTION_COLUMNS = {
    "owner_id": "Deal owner.",
    "owner_name": "Owner's name.",
    "team": "Owner's team.",
    "action_rank": "Rank within the owner's list by expected value at risk (1 = most at risk; deals without a value last).",
    "deal_id": "The deal.",
    "client_id": "Its client.",
    "business_line": "Business line.",
    "segment": "Client segment.",
    "stage_id": "Stage the deal is in.",
    "stage_entered_at": "When it entered that stage (UTC).",
    "days_in_stage": "Whole days from the stage entry date to the as-of date (as dim_deals.days_in_current_stage).",
    "sla_days": "The stage's SLA in days (catalogue).",
    "sla_overdue_days": "days_in_stage - sla_days when past the SLA; empty otherwise.",
    "usual_days_in_stage": "P80 of the completed stays in this line x segment x stage over the window (the line x stage's with too few).",
    "usual_time_overdue_days": "days_in_stage - usual_days_in_stage when past it; empty otherwise.",
    "last_activity_at": "Latest activity on the deal up to the as-of date (UTC); empty without any.",
    "idle_days": "Whole days since the later of the last activity and the stage entry.",
    "normal_idle_days": "P80 of the quiet gaps (entry to first activity, between activities, last activity to exit) in completed stays of this line x segment x stage.",
    "idle_overdue_days": "idle_days - normal_idle_days when longer; empty otherwise.",
    "is_sla_breached": "Past the stage's SLA.",
    "is_past_usual_time": "Past the usual time in the stage.",
    "is_idle": "No activity for longer than is normal at the stage.",
    "overdue_summary": "What is overdue and by how many days, in words.",
    "max_overdue_days": "The largest of the overdue figures.",
    "expected_value_at_risk_reporting": "Expected won amount, EUR: pipeline_forecast_deals.expected_won_amount, else amount x stage win probability.",
    "value_basis": "pipeline_forecast or amount_x_stage_probability; empty when neither is known.",
}


# ------------------------------------------------------------------------------------------- wiring


def _activity_relations() -> dict[str, str]:
    """The large sources, read by the transforms' SQL in the warehouse (only what each query needs)."""
    return {name: ".".join(SOURCES[name]) for name in ACTIVITY_SOURCES}


def _small(conn: duckdb.DuckDBPyConnection, name: str) -> pl.LazyFrame:
    return read_frame(conn, *SOURCES[name]).lazy()


def _exists(conn: duckdb.DuckDBPyConnection, key: dg.AssetKey) -> bool:
    rows = conn.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        list(key.path),
    ).fetchall()
    return rows[0][0] > 0


def _markdown(frame: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=10_000,
        fmt_str_lengths=60,
        float_precision=2,
    ):
        return str(frame)


def plan_headline(plan: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Per owner, the weeks from today on: planned hours at the peak week, capacity, and how many weeks are
    feasible / tight / overloaded."""
    weeks = (
        plan.filter(~pl.col("is_past_week") & (pl.col("activity_type") == "(all)"))
        .group_by("owner_id", "week_start")
        .agg(pl.col("team", "week_planned_hours", "capacity_hours_per_week", "utilisation", "status").first())
    )
    return (
        weeks.group_by("owner_id")
        .agg(
            pl.col("team").first(),
            pl.col("capacity_hours_per_week").first(),
            pl.col("week_planned_hours").max().alias("peak_week_hours"),
            pl.col("utilisation").max().alias("peak_utilisation"),
            *((pl.col("status") == s).sum().alias(f"{s}_weeks") for s in ("feasible", "tight", "overloaded")),
        )
        .sort("owner_id")
    )


def build_action_plan_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = {
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": WRITER_POOL,
        "group_name": "action_plan",
        "kinds": {"polars", "duckdb"},
    }

    @dg.asset(
        key=ACTIVITY_NORMS_KEY, deps=[*SOURCE_KEYS, DEAL_FACTS_KEY], description=ACTIVITY_NORMS, **common
    )
    def activity_norms_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: ActivityNormsConfig
    ) -> dg.MaterializeResult:
        """One row per business line x segment x stage x activity type x owner; from the activity history."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_activity_relations(), **shared}) as source_tables:
                frame = activity_norms_from_tables(
                    source_tables, _small(conn, "stages"), _small(conn, "owners"), as_of, config.settings()
                ).collect()
            replace_table(conn, "marts", "activity_norms", frame, ACTIVITY_NORMS, ACTIVITY_NORMS_COLUMNS)
        owners = frame.filter(
            (pl.col("segment") == "(all)")
            & (pl.col("activity_type") == "(all)")
            & (pl.col("owner_id") != "(all)")
        )
        headline = owners.group_by("business_line", "owner_id", "owner_name").agg(
            pl.col("activities_per_deal").sum().alias("activities_per_deal_all_stages"),
            pl.col("hours_per_deal").sum().alias("hours_per_deal_all_stages"),
            pl.col("decided_deal_count").max().alias("decided_deals_first_stage"),
            pl.col("has_history").all(),
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "small_sample_rows": int(frame["is_small_sample"].sum()),
                "owner_effort": dg.MetadataValue.md(_markdown(headline.sort("business_line", "owner_id"))),
            }
        )

    @dg.asset(
        key=ACTION_PLAN_KEY,
        deps=[*SOURCE_KEYS, ACTIVITY_NORMS_KEY, LEAD_REQUIREMENTS_KEY, SEGMENT_FOCUS_KEY, DEAL_FACTS_KEY],
        description=ACTION_PLAN,
        **common,
    )
    def action_plan_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: ActionPlanConfig
    ) -> dg.MaterializeResult:
        """One row per target period x owner x week x line x segment x stage x activity type; from
        marts.lead_requirements, activity_norms, segment_focus and the activity history."""
        as_of = partition_as_of(context)
        period_start = date.fromisoformat(config.period_start) if config.period_start else None
        with warehouse.connect() as conn:
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_activity_relations(), **shared}) as source_tables:
                frame = action_plan_from_tables(
                    source_tables,
                    read_frame(conn, *LEAD_REQUIREMENTS_KEY.path).lazy(),
                    read_frame(conn, *ACTIVITY_NORMS_KEY.path).lazy(),
                    _small(conn, "owners"),
                    value_per_lead=read_frame(conn, *SEGMENT_FOCUS_KEY.path).lazy(),
                    as_of=as_of,
                    settings=config.plan_settings(),
                    norm_settings=config.settings(),
                    period_start=period_start,
                ).collect()
            replace_table(
                conn, "marts", "action_plan", frame, ACTION_PLAN, ACTION_PLAN_COLUMNS, order_by=PLAN_ORDER
            )
        headline = plan_headline(frame, as_of)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "overloaded_owner_weeks": int(headline["overloaded_weeks"].sum()) if headline.height else 0,
                "owners": dg.MetadataValue.md(_markdown(headline)),
            }
        )

    @dg.asset(
        key=DEALS_NEEDING_ACTION_KEY,
        deps=[*SOURCE_KEYS, PIPELINE_FORECAST_DEALS_KEY],
        description=DEALS_NEEDING_ACTION,
        **common,
    )
    def deals_needing_action_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: DealsNeedingActionConfig
    ) -> dg.MaterializeResult:
        """One row per open deal needing an action today; from the stage history, activities and forecast."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            forecast = (
                read_frame(conn, *PIPELINE_FORECAST_DEALS_KEY.path).lazy()
                if _exists(conn, PIPELINE_FORECAST_DEALS_KEY)
                else None
            )
            with tables(conn, _activity_relations()) as source_tables:
                frame = deals_needing_action_from_tables(
                    source_tables,
                    _small(conn, "stages"),
                    _small(conn, "owners"),
                    as_of=as_of,
                    forecast_deals=forecast,
                    settings=config.action_settings(),
                    norm_settings=config.settings(),
                ).collect()
            replace_table(
                conn,
                "marts",
                "deals_needing_action",
                frame,
                DEALS_NEEDING_ACTION,
                DEALS_NEEDING_ACTION_COLUMNS,
            )
        per_owner = (
            frame.group_by("owner_id", "owner_name")
            .agg(
                deals=pl.len(),
                sla_breached=pl.col("is_sla_breached").sum(),
                past_usual_time=pl.col("is_past_usual_time").sum(),
                idle=pl.col("is_idle").sum(),
                value_at_risk_reporting=pl.col("expected_value_at_risk_reporting").sum(),
            )
            .sort("owner_id")
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                "value_basis": "pipeline_forecast_deals"
                if forecast is not None
                else "amount x stage probability",
                "per_owner": dg.MetadataValue.md(_markdown(per_owner)),
            }
        )

    return [activity_norms_table, action_plan_table, deals_needing_action_table]
