"""Checks on the forecast marts: probabilities in [0, 1], ordered percentiles, reproducible figures."""

import dagster as dg
import polars as pl

from ingestion.frames import read_frame
from orchestration.defs.forecast.assets import (
    FORECAST_BACKTEST,
    FORECAST_BACKTEST_SUMMARY,
    PIPELINE_FORECAST,
    PIPELINE_FORECAST_DEALS,
    ForecastConfig,
    live_calibration,
    load_funnel_spells,
)
from orchestration.defs.warehouse_checks import check_step, warehouse_check
from orchestration.partitions import WRITER_POOL
from orchestration.resources import WarehouseResource
from transforms.forecast import forecast_as_of

# Not in the daily job: it recomputes the whole simulation (as long as the forecast itself). It runs in
# the weekly audit job (orchestration/definitions.py) and from the asset's page in the UI.
FORECAST_REPRODUCIBLE = dg.AssetCheckKey(PIPELINE_FORECAST, "forecast_reproducible")

PROBABILITY_COLUMNS = (
    "crm_probability",
    "stage_win_probability",
    "win_probability",
    "probability_won_current_month",
    "probability_won_current_quarter",
)


def probabilities_outside_unit_interval(deals: pl.DataFrame) -> pl.DataFrame:
    """Deals with a probability below 0, above 1 or missing (the CRM probability may be missing)."""
    bad = pl.any_horizontal(
        *[
            pl.col(c).is_null() | ~pl.col(c).is_between(0.0, 1.0)
            for c in PROBABILITY_COLUMNS
            if c != "crm_probability"
        ],
        pl.col("crm_probability").is_not_null() & ~pl.col("crm_probability").is_between(0.0, 1.0),
    )
    return deals.filter(bad)


def percentiles_out_of_order(frame: pl.DataFrame, p10: str, p50: str, p90: str) -> pl.DataFrame:
    """Rows where P10 <= P50 <= P90 fails (rows without percentiles aside)."""
    return frame.filter(
        pl.col(p10).is_not_null() & ~((pl.col(p10) <= pl.col(p50)) & (pl.col(p50) <= pl.col(p90)))
    )


def build_forecast_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """Two steps of the daily job: the backtest's checks (its two tables are written by one step) and
    the live forecast's (likewise); and the reproducibility check, which recomputes the forecast and
    runs in the weekly audit job (AUDIT_CHECKS in orchestration/definitions.py)."""

    def probabilities_within_unit_interval(context, conn) -> dg.AssetCheckResult:
        bad = probabilities_outside_unit_interval(read_frame(conn, "marts", "pipeline_forecast_deals"))
        return dg.AssetCheckResult(
            passed=bad.height == 0,
            metadata={
                "failing_deals": bad.height,
                "examples": dg.MetadataValue.json(bad.head(5).select("deal_id").to_series().to_list()),
            },
        )

    def percentiles_ordered(context, conn) -> dg.AssetCheckResult:
        bad = percentiles_out_of_order(
            read_frame(conn, "marts", "pipeline_forecast"), "revenue_p10", "revenue_p50", "revenue_p90"
        )
        return dg.AssetCheckResult(passed=bad.height == 0, metadata={"failing_rows": bad.height})

    def backtest_percentiles_ordered(context, conn) -> dg.AssetCheckResult:
        bad = percentiles_out_of_order(
            read_frame(conn, "marts", "forecast_backtest"), "forecast_p10", "forecast_p50", "forecast_p90"
        )
        return dg.AssetCheckResult(passed=bad.height == 0, metadata={"failing_rows": bad.height})

    def learned_beats_naive(context, conn) -> dg.AssetCheckResult:
        summary = read_frame(conn, "marts", "forecast_backtest_summary")
        mape = summary.filter(pl.col("business_line") == "all").pivot(
            on="method", index="horizon_months", values="mape"
        )
        worse = mape.filter(pl.col("learned") >= pl.col("naive"))
        return dg.AssetCheckResult(
            passed=worse.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"mape": dg.MetadataValue.json(mape.to_dicts())},
        )

    @dg.asset_check(
        asset=PIPELINE_FORECAST,
        name=FORECAST_REPRODUCIBLE.name,
        description="Recomputing the forecast from the same inputs, as of the date it was written for, gives "
        "exactly the written table (seeded simulation): two runs on the same data give the same forecast. "
        "It recomputes over every spell held in memory, so it also checks that the live asset, which "
        "reads only the training window's deals, gives the same tables. "
        "Weekly (job forecast_audit), not daily: it costs as much as the forecast. Run it with the "
        "forecast settings the daily job used (both schedules use the defaults).",
        pool=WRITER_POOL,
    )
    def forecast_reproducible(
        context: dg.AssetCheckExecutionContext, config: ForecastConfig, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            written = read_frame(conn, "marts", "pipeline_forecast")
            as_of_dates = written.get_column("as_of_date").unique().to_list()
            if len(as_of_dates) != 1:
                return dg.AssetCheckResult(
                    passed=False,
                    description=f"marts.pipeline_forecast holds {len(as_of_dates)} as-of dates, not one",
                )
            as_of = as_of_dates[0]
            spells, stages = load_funnel_spells(conn)
            calibration = live_calibration(conn, as_of)
        again = forecast_as_of(
            spells, stages, as_of, config.horizon_quarters, config.settings(), calibration
        ).periods
        keys = ["period_type", "period_start", "business_line", "segment"]
        same = written.columns == again.columns and written.sort(keys).equals(again.sort(keys))
        return dg.AssetCheckResult(
            passed=same, metadata={"rows_compared": written.height, "as_of_date": as_of.isoformat()}
        )

    backtest = [
        warehouse_check(
            FORECAST_BACKTEST,
            "backtest_percentiles_ordered",
            "P10 <= P50 <= P90 at every backtest origin.",
            partitions_def,
            backtest_percentiles_ordered,
            blocking=False,
        ),
        warehouse_check(
            FORECAST_BACKTEST_SUMMARY,
            "learned_beats_naive",
            "Total, per horizon: the learned method's backtest MAPE is below the naive weighted pipeline's. "
            "A warning, not a blocker: it tells the team to distrust the learned figures.",
            partitions_def,
            learned_beats_naive,
            blocking=False,
        ),
    ]
    live = [
        warehouse_check(
            PIPELINE_FORECAST_DEALS,
            "probabilities_within_unit_interval",
            "Every deal's probabilities (stage, age-adjusted, current month and quarter, CRM) lie in [0, 1].",
            partitions_def,
            probabilities_within_unit_interval,
        ),
        warehouse_check(
            PIPELINE_FORECAST,
            "percentiles_ordered",
            "P10 <= P50 <= P90 on every period x line x segment row.",
            partitions_def,
            percentiles_ordered,
        ),
    ]
    return [
        check_step("forecast_backtest_checks", backtest),
        check_step("pipeline_forecast_checks", live),
        forecast_reproducible,
    ]
