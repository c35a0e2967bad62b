"""Asset checks on the funnel tables: rates are shares, the funnel only narrows, totals agree with the
dbt marts, and no business line x segment goes missing."""

import dagster as dg
import polars as pl

from ingestion.frames import read_frame
from orchestration.defs.funnel.assets import (
    FUNNEL_COHORTS_KEY,
    FUNNEL_CONVERSION_KEY,
    LEAD_REQUIREMENTS_KEY,
    SEGMENT_FOCUS_KEY,
    SOURCE_KEYS,
)
from orchestration.defs.warehouse_checks import WarehouseCheck, check_steps_per_asset
from orchestration.defs.warehouse_checks import examples_metadata as _examples
from orchestration.defs.warehouse_checks import warehouse_check as _check
from orchestration.partitions import partition_as_of
from transforms.funnel import ALL, rates_out_of_range, rising_down_the_funnel

RATE_COLUMNS = {
    FUNNEL_CONVERSION_KEY: [
        "step_conversion",
        "cumulative_conversion",
        "conversion_to_won",
        "win_rate_count",
        "win_rate_amount",
    ],
    FUNNEL_COHORTS_KEY: [
        "won_share_observed",
        "lost_share_observed",
        "open_share",
        "won_share_estimated",
        "lost_share_estimated",
    ],
    LEAD_REQUIREMENTS_KEY: [
        "step_conversion_observed",
        "step_conversion",
        "step_conversion_low",
        "step_conversion_high",
        "conversion_to_won",
        "conversion_to_won_low",
        "conversion_to_won_high",
    ],
    SEGMENT_FOCUS_KEY: [
        "lead_conversion_to_won",
        "lead_conversion_to_won_low",
        "lead_conversion_to_won_high",
        "current_share",
        "recommended_share",
        "win_rate_recent",
        "win_rate_baseline",
        "inflow_p_value",
        "win_rate_p_value",
    ],
}

EXPECTED_PAIRS_SQL = """
    select distinct deals.business_line, coalesce(clients.segment, 'unknown') as segment
    from marts.dim_deals as deals
    left join marts.dim_clients as clients on deals.client_id = clients.client_id
    union
    select distinct business_line, segment from staging.stg_planning__targets
"""


def _rates_check(key: dg.AssetKey, partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        frame = read_frame(conn, *key.path)
        bad = rates_out_of_range(frame, RATE_COLUMNS[key])
        return dg.AssetCheckResult(
            passed=bad.height == 0,
            metadata={"rows_out_of_range": bad.height, "examples": _examples(bad)},
        )

    return _check(
        key,
        "rates_within_unit_interval",
        f"Every rate and share ({', '.join(RATE_COLUMNS[key])}) is within [0, 1].",
        partitions_def,
        evaluate,
    )


def _narrowing_check(
    key: dg.AssetKey, group: list[str], non_increasing: tuple[str, ...], partitions_def
) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        bad = rising_down_the_funnel(read_frame(conn, *key.path), group, non_increasing=non_increasing)
        return dg.AssetCheckResult(
            passed=bad.height == 0, metadata={"widening_rows": bad.height, "examples": _examples(bad)}
        )

    return _check(
        key,
        "funnel_never_widens",
        "Down the stages of each funnel, the share of first-stage deals reaching a stage never rises and the "
        "conversion to won never falls.",
        partitions_def,
        evaluate,
    )


def _missing_segments_check(key: dg.AssetKey, period_column: str | None, partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        expected = conn.sql(EXPECTED_PAIRS_SQL).pl()
        frame = read_frame(conn, *key.path).filter(
            (pl.col("business_line") != ALL) & (pl.col("segment") != ALL)
        )
        present = frame.select("business_line", "segment").unique()
        missing = expected.join(present, on=["business_line", "segment"], how="anti")
        incomplete = pl.DataFrame()
        if period_column:
            per_period = frame.group_by(period_column).agg(
                pairs=pl.struct("business_line", "segment").n_unique()
            )
            incomplete = per_period.filter(pl.col("pairs") < expected.height)
        return dg.AssetCheckResult(
            passed=missing.height == 0 and incomplete.height == 0,
            metadata={
                "expected_pairs": expected.height,
                "missing_pairs": _examples(missing, 20),
                "periods_missing_a_pair": incomplete.height,
            },
        )

    return _check(
        key,
        "no_segment_missing",
        "Every business line x segment with a deal (dim_deals) or a target has rows"
        + (f" in every {period_column}" if period_column else "")
        + ", zero-deal ones included.",
        partitions_def,
        evaluate,
        extra_deps=SOURCE_KEYS,
    )


def _reconciliation_check(partitions_def) -> WarehouseCheck:
    def evaluate(context, conn) -> dg.AssetCheckResult:
        as_of = partition_as_of(context)
        totals = (
            read_frame(conn, *FUNNEL_CONVERSION_KEY.path)
            .filter(
                (pl.col("period_grain") == "month")
                & (pl.col("business_line") == ALL)
                & (pl.col("segment") == ALL)
                & (pl.col("stage_number") == 1)
            )
            .select("period_start", "reached_count", "won_count", "won_amount_reporting")
        )
        entered = conn.sql(
            """
            select cast(date_trunc('month', first_at) as date) as period_start, count(*) as marts_reached
            from (
                select deal_id, min(changed_at) as first_at
                from marts.fct_stage_transitions
                where not is_to_lost and changed_at < $as_of::date + 1
                group by deal_id
            )
            group by 1
            """,
            params={"as_of": as_of},
        ).pl()
        won = conn.sql(
            """
            select cast(date_trunc('month', won_at) as date) as period_start, count(*) as marts_won,
                cast(sum(amount_reporting) as double) as marts_won_amount
            from marts.dim_deals
            where status = 'won' and has_stage_history and won_at < $as_of::date + 1
            group by 1
            """,
            params={"as_of": as_of},
        ).pl()
        fill = (
            read_frame(conn, *FUNNEL_CONVERSION_KEY.path)
            .filter(
                (pl.col("period_grain") == "month")
                & (pl.col("segment") != ALL)
                & (pl.col("business_line") != ALL)
                & pl.col("open_deal_count").is_not_null()
            )
            .with_columns(pipeline_date=pl.min_horizontal("period_end", pl.lit(as_of)))
            .group_by("pipeline_date", "business_line", "stage_id")
            .agg(pl.col("open_deal_count").sum())
        )
        daily = conn.sql(
            "select pipeline_date, business_line, stage_id, sum(open_deal_count) as marts_open "
            "from marts.fct_pipeline_daily group by all"
        ).pl()
        compared = (
            totals.join(entered, on="period_start", how="full", coalesce=True)
            .join(won, on="period_start", how="full", coalesce=True)
            .fill_null(0)
        )
        off = compared.filter(
            (pl.col("reached_count") != pl.col("marts_reached"))
            | (pl.col("won_count") != pl.col("marts_won"))
            | ((pl.col("won_amount_reporting") - pl.col("marts_won_amount")).abs() > 0.01)
        )
        fill_off = fill.join(daily, on=["pipeline_date", "business_line", "stage_id"]).filter(
            pl.col("open_deal_count") != pl.col("marts_open")
        )
        return dg.AssetCheckResult(
            passed=off.height == 0 and fill_off.height == 0,
            metadata={
                "months_compared": compared.height,
                "months_off": _examples(off),
                "stage_fills_compared": fill.height,
                "stage_fills_off": _examples(fill_off),
            },
        )

    return _check(
        FUNNEL_CONVERSION_KEY,
        "reconciles_with_dbt_marts",
        "Monthly totals equal the dbt marts: deals reaching the first stage = first non-lost entries in "
        "fct_stage_transitions; deals won and won amount = dim_deals (deals with stage history); stage fill "
        "at month end = fct_pipeline_daily.",
        partitions_def,
        evaluate,
        extra_deps=[*SOURCE_KEYS, dg.AssetKey(["marts", "fct_pipeline_daily"])],
    )


def build_funnel_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """One step per funnel table."""
    return check_steps_per_asset(
        [
            *(_rates_check(key, partitions_def) for key in RATE_COLUMNS),
            _narrowing_check(
                FUNNEL_CONVERSION_KEY,
                ["period_grain", "period_start", "business_line", "segment"],
                ("cumulative_conversion",),
                partitions_def,
            ),
            _narrowing_check(
                LEAD_REQUIREMENTS_KEY, ["period_start", "business_line", "segment"], (), partitions_def
            ),
            _reconciliation_check(partitions_def),
            _missing_segments_check(FUNNEL_CONVERSION_KEY, "period_start", partitions_def),
            _missing_segments_check(FUNNEL_COHORTS_KEY, "cohort_month", partitions_def),
            _missing_segments_check(LEAD_REQUIREMENTS_KEY, "period_start", partitions_def),
            _missing_segments_check(SEGMENT_FOCUS_KEY, None, partitions_def),
        ]
    )
