"""Asset checks on the action-plan tables: the plan adds up to the lead requirements, owners without history
carry the line's norm, norms sit inside their intervals, and the SLA list agrees with dim_deals."""

import dagster as dg
import polars as pl

from ingestion.frames import read_frame
from orchestration.defs.action_plan.assets import (
    ACTION_PLAN_KEY,
    ACTIVITY_NORMS_KEY,
    DEALS_NEEDING_ACTION_KEY,
)
from orchestration.defs.funnel.assets import LEAD_REQUIREMENTS_KEY
from orchestration.defs.warehouse_checks import WarehouseCheck, check_steps_per_asset
from orchestration.defs.warehouse_checks import examples_metadata as _examples
from orchestration.defs.warehouse_checks import warehouse_check as _check
from orchestration.partitions import partition_as_of

RECONCILIATION_TOLERANCE = 1e-6
"""Relative difference allowed between the plan's deals and deals_needed (float sums over days)."""


def plan_off_requirements(plan: pl.DataFrame, requirements: pl.DataFrame) -> pl.DataFrame:
    """Period x line x segment x stage where the plan's deals entering (summed over owners and weeks) differ
    from deals_needed, or where one side is missing; only the periods the plan covers."""
    keys = ["period_start", "business_line", "segment", "stage_id"]
    planned = (
        plan.filter(pl.col("activity_type") == "(all)")
        .group_by(keys)
        .agg(planned_deals=pl.col("deals_entering").sum())
    )
    needed = requirements.filter(
        pl.col("deals_needed").is_not_null()
        & pl.col("period_start").is_in(plan["period_start"].unique().implode())
    ).select(*keys, "deals_needed")
    return (
        needed.join(planned, on=keys, how="full", coalesce=True)
        .with_columns(
            difference=(pl.col("planned_deals") - pl.col("deals_needed")).abs()
            / pl.max_horizontal(pl.lit(1.0), pl.col("deals_needed").abs())
        )
        .filter(pl.col("difference").is_null() | (pl.col("difference") > RECONCILIATION_TOLERANCE))
    )


def owner_norms_off_line(norms: pl.DataFrame) -> pl.DataFrame:
    """Owner rows without history whose norm is not exactly the team's (the line's) norm."""
    keys = ["business_line", "segment", "stage_id", "activity_type"]
    team = norms.filter(pl.col("owner_id") == "(all)").select(
        *keys, team_activities="activities_per_deal", team_hours="hours_per_deal"
    )
    return (
        norms.filter((pl.col("owner_id") != "(all)") & ~pl.col("has_history"))
        .join(team, on=keys, how="left")
        .filter(
            ~(
                ((pl.col("activities_per_deal") - pl.col("team_activities")).abs() < 1e-9)
                & ((pl.col("hours_per_deal") - pl.col("team_hours")).abs() < 1e-9)
            ).fill_null(False)
        )
    )


def norms_outside_interval(norms: pl.DataFrame) -> pl.DataFrame:
    """Rows where a norm is negative or outside its own interval."""
    bad = [
        (pl.col(f"{n}_low") < 0)
        | (pl.col(f"{n}_low") > pl.col(n) + 1e-12)
        | (pl.col(n) > pl.col(f"{n}_high") + 1e-12)
        for n in ("activities_per_deal", "hours_per_deal")
    ]
    return norms.filter(pl.any_horizontal(bad).fill_null(False))


def _reconciliation_check(partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        # The plan is large (owners x weeks x stages x types): read only what the reconciliation sums.
        plan = conn.sql(
            "select period_start, business_line, segment, stage_id, activity_type, deals_entering "
            "from marts.action_plan where activity_type = '(all)'"
        ).pl()
        off = plan_off_requirements(plan, read_frame(conn, *LEAD_REQUIREMENTS_KEY.path))
        return dg.AssetCheckResult(
            passed=off.height == 0, metadata={"cells_off": off.height, "examples": _examples(off)}
        )

    return _check(
        ACTION_PLAN_KEY,
        "plan_reconciles_with_lead_requirements",
        "Per target period x business line x segment x stage, the deals entering summed over owners and "
        "weeks equal lead_requirements.deals_needed (relative tolerance 1e-6), and no cell is missing on "
        "either side.",
        partitions_def,
        evaluate,
        extra_deps=[LEAD_REQUIREMENTS_KEY],
    )


def _line_norm_check(partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        norms = read_frame(conn, *ACTIVITY_NORMS_KEY.path)
        off = owner_norms_off_line(norms)
        outside = norms_outside_interval(norms)
        return dg.AssetCheckResult(
            passed=off.height == 0 and outside.height == 0,
            metadata={
                "owner_rows_without_history": int(
                    norms.filter((pl.col("owner_id") != "(all)") & ~pl.col("has_history")).height
                ),
                "not_on_line_norm": _examples(off),
                "outside_interval": _examples(outside),
            },
        )

    return _check(
        ACTIVITY_NORMS_KEY,
        "owners_without_history_get_line_norm",
        "Owner rows without a decided deal carry exactly the team's (business line's) norm, and every norm "
        "is non-negative and inside its own interval.",
        partitions_def,
        evaluate,
    )


def _sla_check(partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        as_of = partition_as_of(context)
        listed = read_frame(conn, *DEALS_NEEDING_ACTION_KEY.path)
        breached = conn.sql(
            """
            select deal_id from marts.dim_deals
            where status = 'open' and is_sla_breached and as_of_date = $as_of
            """,
            params={"as_of": as_of},
        ).pl()
        compared = bool(
            conn.execute("select count(*) from marts.dim_deals where as_of_date = ?", [as_of]).fetchall()[0][
                0
            ]
        )
        flagged = listed.filter(pl.col("is_sla_breached")).select("deal_id")
        missing = breached.join(flagged, on="deal_id", how="anti") if compared else breached.clear()
        extra = flagged.join(breached, on="deal_id", how="anti") if compared else flagged.clear()
        not_overdue = listed.filter(~(pl.col("max_overdue_days") > 0).fill_null(False))
        return dg.AssetCheckResult(
            passed=missing.height == 0 and extra.height == 0 and not_overdue.height == 0,
            metadata={
                "compared_with_dim_deals": compared,
                "sla_breaches_missing": _examples(missing),
                "sla_breaches_not_in_dim_deals": _examples(extra),
                "listed_without_overdue": not_overdue.height,
            },
        )

    return _check(
        DEALS_NEEDING_ACTION_KEY,
        "sla_breaches_match_dim_deals",
        "The deals listed as past their SLA are exactly the open deals dim_deals marks is_sla_breached (when "
        "dim_deals is as of the same date), and every listed deal is overdue by more than zero days.",
        partitions_def,
        evaluate,
        extra_deps=[dg.AssetKey(["marts", "dim_deals"])],
    )


def build_action_plan_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """One step per table."""
    return check_steps_per_asset(
        [_line_norm_check(partitions_def), _sla_check(partitions_def), _reconciliation_check(partitions_def)]
    )
