"""Forecast assets: the live forecast, its backtest, and the kept history of every run's forecast."""

import uuid
from datetime import date

import dagster as dg
import duckdb
import polars as pl

from ingestion.frames import read_frame, replace_rows, replace_table
from orchestration.defs.forecast import descriptions as d
from orchestration.partitions import WRITER_POOL, partition_as_of
from orchestration.resources import WarehouseResource
from transforms.forecast import (
    DEAL_COLUMNS,
    FORECAST_SPELLS_SQL,
    SPELL_COLUMNS,
    SPELL_ORDER,
    ForecastResult,
    ForecastSettings,
    cutoff_for,
    forecast_as_of,
    funnel_spells,
    window_deals_sql,
)
from transforms.forecast_backtest import (
    AMOUNT_COLUMNS,
    FINGERPRINT_DEALS_SQL,
    backtest_origins,
    backtest_summary,
    origin_fingerprints_from_tables,
    run_backtest,
)
from transforms.forecast_calibration import calibration_at
from transforms.forecast_history import deal_states_at, forecast_changes
from transforms.sql import tables

GROUP = "forecast"
KINDS = {"polars", "duckdb"}
INPUTS = [
    dg.AssetKey(["intermediate", "int_deal_stage_spells"]),
    dg.AssetKey(["marts", "dim_deals"]),
    dg.AssetKey(["marts", "dim_clients"]),
    dg.AssetKey(["staging", "stg_crm__stages"]),
]
AMOUNT_HISTORY = dg.AssetKey(["intermediate", "int_deal_amounts_known"])
# The relations the backtest's fingerprints read (`origin_fingerprints_from_tables`).
FINGERPRINT_SOURCES = {
    "spells": "intermediate.int_deal_stage_spells",
    "dim_deals": "marts.dim_deals",
    "dim_clients": "marts.dim_clients",
    "amounts": "intermediate.int_deal_amounts_known",
}
PIPELINE_FORECAST = dg.AssetKey(["marts", "pipeline_forecast"])
PIPELINE_FORECAST_DEALS = dg.AssetKey(["marts", "pipeline_forecast_deals"])
FORECAST_BACKTEST = dg.AssetKey(["marts", "forecast_backtest"])
FORECAST_BACKTEST_SUMMARY = dg.AssetKey(["marts", "forecast_backtest_summary"])
FORECAST_HISTORY = dg.AssetKey(["marts", "forecast_history"])
FORECAST_HISTORY_DEALS = dg.AssetKey(["marts", "forecast_history_deals"])
FORECAST_CHANGES = dg.AssetKey(["marts", "forecast_changes"])


class ForecastConfig(dg.Config):
    """The learned forecast's knobs (see transforms.forecast.ForecastSettings and docs/forecast.md)."""

    training_window_days: int = 365
    inflow_window_days: int = 91
    segment_prior_strength: float = 20.0
    age_prior_strength: float = 10.0
    min_timing_samples: int = 20
    simulations: int = 2000
    horizon_quarters: int = 2
    """Quarters forecast: the as-of quarter and the ones after it."""

    def settings(self) -> ForecastSettings:
        return ForecastSettings(
            training_window_days=self.training_window_days,
            inflow_window_days=self.inflow_window_days,
            segment_prior_strength=self.segment_prior_strength,
            age_prior_strength=self.age_prior_strength,
            min_timing_samples=self.min_timing_samples,
            simulations=self.simulations,
        )


class BacktestConfig(ForecastConfig):
    """Forecast knobs plus where the backtest's origins start."""

    warmup_months: int = 12
    """Months of history before the first origin: a full training window, so early origins are not
    judged on a model that has seen only short, early deals."""


WON_DEALS = "deal_id IN (SELECT deal_id FROM intermediate.int_deal_stage_spells WHERE is_won)"


def load_funnel_spells(
    conn: duckdb.DuckDBPyConnection, deal_ids: pl.DataFrame | None = None, won_only: bool = False
) -> tuple[pl.LazyFrame, pl.DataFrame]:
    """The forecast's input: spells with their deals' attributes, and the stage catalogue. With
    `deal_ids` (a frame with a deal_id column), only those deals' rows are read; `won_only`: only the
    spells in a won stage (the backtest's actuals)."""
    stages = read_frame(conn, "staging", "stg_crm__stages")
    view = f"_forecast_deal_ids_{uuid.uuid4().hex[:8]}"
    if deal_ids is not None:
        conn.register(view, deal_ids.select("deal_id").unique().to_arrow())

    chosen = f"deal_id IN (SELECT deal_id FROM {view})" if deal_ids is not None else None

    def of_deals(schema: str, name: str, columns, order_by=None, also: str | None = None) -> pl.LazyFrame:
        condition = " AND ".join(c for c in (chosen, also) if c) or None
        return read_frame(conn, schema, name, columns, where=condition, order_by=order_by).lazy()

    try:
        # The spells are sorted by DuckDB as they are read: funnel_spells then keeps their order.
        spells = funnel_spells(
            of_deals(
                "intermediate",
                "int_deal_stage_spells",
                SPELL_COLUMNS,
                order_by=SPELL_ORDER,
                also="is_won" if won_only else None,
            ),
            # With won_only, only the won deals' rows (about a tenth of the deals), not every deal.
            of_deals("marts", "dim_deals", DEAL_COLUMNS, also=WON_DEALS if won_only else None),
            read_frame(conn, "marts", "dim_clients", ("client_id", "segment")).lazy(),
            stages.lazy(),
            spells_sorted=True,
        ).collect()
    finally:
        if deal_ids is not None:
            conn.unregister(view)
    return spells.lazy(), stages


def warehouse_fingerprints(
    conn: duckdb.DuckDBPyConnection, stages: pl.DataFrame, origins: list, settings: ForecastSettings
) -> pl.DataFrame:
    """The backtest origins' input fingerprints, computed in DuckDB over the warehouse's relations
    (`origin_fingerprints_from_tables`, with the amount history): the spells are not read into Python."""
    with tables(conn, FINGERPRINT_SOURCES) as t:
        t.define("fingerprint_deals", FINGERPRINT_DEALS_SQL)
        return origin_fingerprints_from_tables(t, stages, origins, settings, with_amounts=True)


def live_forecast(
    conn: duckdb.DuckDBPyConnection,
    as_of: date,
    horizon_quarters: int,
    settings: ForecastSettings,
    calibration: dict[int, float],
) -> ForecastResult:
    """The live forecast as of `as_of`, reading into memory only the spells of the deals its training
    window needs (`window_deals_sql`); the age factors and segments, which span the whole history, are
    computed in DuckDB over every spell. The same figures as `forecast_as_of` over every spell (the
    weekly `forecast_reproducible` check recomputes it that way and compares)."""
    with tables(conn, FINGERPRINT_SOURCES) as t:
        deal_ids = t.frame(window_deals_sql(cutoff_for(as_of), settings))
        spells, stages = load_funnel_spells(conn, deal_ids)
        t.define("forecast_deals", FINGERPRINT_DEALS_SQL)
        t.define("forecast_spells", FORECAST_SPELLS_SQL)
        return forecast_as_of(spells, stages, as_of, horizon_quarters, settings, calibration, history=t)


def read_amount_history(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The deals' amount history, so the backtest values a deal at an origin by its amount then (the
    transforms take the amounts as floats)."""
    return read_frame(conn, *AMOUNT_HISTORY.path, AMOUNT_COLUMNS)


def read_backtest(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame | None:
    """The backtest table of the previous run, if there is one: the origins it holds are reused when
    their inputs did not change, and its closed windows calibrate the live forecast's range."""
    exists = conn.sql(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE schema_name = 'marts' AND table_name = 'forecast_backtest'"
    ).fetchall()[0][0]
    return read_frame(conn, "marts", "forecast_backtest") if exists else None


def live_calibration(conn: duckdb.DuckDBPyConnection, as_of) -> dict[int, float]:
    """Extra log-variance per horizon for the forecast as of `as_of`, from the backtest's closed windows
    ({} = the range as simulated, when no backtest has run yet)."""
    return calibration_at(read_backtest(conn), as_of)


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _forecast_headline(periods: pl.DataFrame) -> str:
    totals = periods.filter((pl.col("business_line") == "all") & (pl.col("segment") == "all"))
    lines = [
        "| period | won to date | expected | P10 | P50 | P90 | naive weighted |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in totals.sort("period_type", "period_start").iter_rows(named=True):
        lines.append(
            f"| {row['period_type']} {row['period_start']} | {_money(row['won_to_date_revenue'])} | "
            f"{_money(row['expected_revenue'])} | {_money(row['revenue_p10'])} | "
            f"{_money(row['revenue_p50'])} | "
            f"{_money(row['revenue_p90'])} | {_money(row['naive_weighted_pipeline'])} |"
        )
    return "\n".join(lines)


def _backtest_headline(summary: pl.DataFrame) -> str:
    lines = [
        "| horizon | method | origins | MAPE | bias | P10-P90 coverage |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in summary.filter(pl.col("business_line") == "all").iter_rows(named=True):
        coverage = "" if row["p10_p90_coverage"] is None else f"{row['p10_p90_coverage']:.0%}"
        lines.append(
            f"| {row['horizon_months']} month(s) | {row['method']} | {row['origins']} | {row['mape']:.1%} | "
            f"{row['bias']:+.1%} | {coverage} |"
        )
    return "\n".join(lines)


def build_forecast_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = {
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": WRITER_POOL,
    }

    forecast_deps = [*INPUTS, FORECAST_BACKTEST]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                PIPELINE_FORECAST,
                deps=forecast_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.PIPELINE_FORECAST,
            ),
            dg.AssetSpec(
                PIPELINE_FORECAST_DEALS,
                deps=forecast_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.PIPELINE_FORECAST_DEALS,
            ),
        ],
        name="pipeline_forecast",
        **common,
    )
    def pipeline_forecast(
        context: dg.AssetExecutionContext, config: ForecastConfig, warehouse: WarehouseResource
    ):
        """Per month/quarter x line x segment and per open deal, as of the run's last extract date; from the
        stage spells, deals, clients and stage catalogue, the range calibrated by the backtest."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            calibration = live_calibration(conn, as_of)
            result = live_forecast(conn, as_of, config.horizon_quarters, config.settings(), calibration)
            replace_table(
                conn,
                "marts",
                "pipeline_forecast",
                result.periods,
                d.PIPELINE_FORECAST,
                d.PIPELINE_FORECAST_COLUMNS,
            )
            replace_table(
                conn,
                "marts",
                "pipeline_forecast_deals",
                result.deals,
                d.PIPELINE_FORECAST_DEALS,
                d.PIPELINE_FORECAST_DEALS_COLUMNS,
            )
        yield dg.MaterializeResult(
            asset_key=PIPELINE_FORECAST,
            metadata={
                "dagster/row_count": result.periods.height,
                "as_of_date": as_of.isoformat(),
                "calibration_log_sd": dg.MetadataValue.json(
                    {f"{h} month(s)": round(v**0.5, 4) for h, v in sorted(calibration.items())}
                ),
                "forecast": dg.MetadataValue.md(_forecast_headline(result.periods)),
            },
        )
        yield dg.MaterializeResult(
            asset_key=PIPELINE_FORECAST_DEALS,
            metadata={
                "dagster/row_count": result.deals.height,
                "imputed_amounts": int(result.deals.get_column("is_amount_imputed").sum()),
                "expected_won_amount": float(result.deals.get_column("expected_won_amount").sum()),
            },
        )

    backtest_deps = [*INPUTS, AMOUNT_HISTORY]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                FORECAST_BACKTEST,
                deps=backtest_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.FORECAST_BACKTEST,
            ),
            dg.AssetSpec(
                FORECAST_BACKTEST_SUMMARY,
                deps=backtest_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.FORECAST_BACKTEST_SUMMARY,
            ),
        ],
        name="forecast_backtest",
        **common,
    )
    def forecast_backtest(
        context: dg.AssetExecutionContext, config: BacktestConfig, warehouse: WarehouseResource
    ):
        """Per monthly origin x horizon x line x method, the forecast from events before the origin against
        what was won; from the same inputs as pipeline_forecast. Origins whose inputs did not change since
        the table was written are taken from it (see input_fingerprint), the others computed."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            stages = read_frame(conn, "staging", "stg_crm__stages")
            first_event_at = conn.sql(
                "SELECT min(entered_at) FROM intermediate.int_deal_stage_spells "
                "WHERE deal_id IN (SELECT deal_id FROM marts.dim_deals)"
            ).fetchall()[0][0]
            origins = (
                backtest_origins(first_event_at, as_of, config.warmup_months, 3)
                if first_event_at is not None
                else []
            )
            # On a day that changed no origin's inputs, only the won spells (the actuals) are read, not
            # every spell of the history nor the amount history.
            fingerprints = warehouse_fingerprints(conn, stages, origins, config.settings())
            run = run_backtest(
                lambda: load_funnel_spells(conn)[0],
                stages,
                origins,
                config.settings(),
                previous=read_backtest(conn),
                amounts=lambda: read_amount_history(conn),
                fingerprints=fingerprints,
                won_spells=lambda: load_funnel_spells(conn, won_only=True)[0],
            )
            rows = run.rows
            if rows.height == 0:
                raise dg.Failure(
                    f"No backtest origin: the history before {as_of} is shorter than "
                    f"{config.warmup_months} months of warm-up plus a 3-month window."
                )
            summary = backtest_summary(rows.lazy()).collect()
            replace_table(
                conn, "marts", "forecast_backtest", rows, d.FORECAST_BACKTEST, d.FORECAST_BACKTEST_COLUMNS
            )
            replace_table(
                conn,
                "marts",
                "forecast_backtest_summary",
                summary,
                d.FORECAST_BACKTEST_SUMMARY,
                d.FORECAST_BACKTEST_SUMMARY_COLUMNS,
            )
        yield dg.MaterializeResult(
            asset_key=FORECAST_BACKTEST,
            metadata={
                "dagster/row_count": rows.height,
                "origins": len(origins),
                "origins_recomputed": len(run.recomputed),
                "origins_reused": len(run.reused),
                "recomputed": ", ".join(o.isoformat() for o in run.recomputed) or "none",
            },
        )
        yield dg.MaterializeResult(
            asset_key=FORECAST_BACKTEST_SUMMARY,
            metadata={
                "dagster/row_count": summary.height,
                "backtest": dg.MetadataValue.md(_backtest_headline(summary)),
            },
        )

    history_deps = [PIPELINE_FORECAST, PIPELINE_FORECAST_DEALS, *INPUTS]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                FORECAST_HISTORY,
                deps=history_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.FORECAST_HISTORY,
            ),
            dg.AssetSpec(
                FORECAST_HISTORY_DEALS,
                deps=history_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.FORECAST_HISTORY_DEALS,
            ),
            dg.AssetSpec(
                FORECAST_CHANGES,
                deps=history_deps,
                group_name=GROUP,
                kinds=KINDS,
                description=d.FORECAST_CHANGES,
            ),
        ],
        name="forecast_history",
        **common,
    )
    def forecast_history(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Every run's forecast kept by as-of date (from pipeline_forecast and pipeline_forecast_deals), and
        the deal-level comparison of this run with the previous one."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            periods = read_frame(conn, "marts", "pipeline_forecast").filter(pl.col("as_of_date") == as_of)
            deals = read_frame(conn, "marts", "pipeline_forecast_deals").filter(pl.col("as_of_date") == as_of)
            if periods.height == 0:
                raise dg.Failure(
                    f"marts.pipeline_forecast holds no forecast as of {as_of}: materialize it first."
                )
            replace_rows(
                conn,
                "marts",
                "forecast_history",
                periods,
                "as_of_date",
                as_of,
                d.FORECAST_HISTORY,
                d.PIPELINE_FORECAST_COLUMNS,
            )
            replace_rows(
                conn,
                "marts",
                "forecast_history_deals",
                deals,
                "as_of_date",
                as_of,
                d.FORECAST_HISTORY_DEALS,
                d.PIPELINE_FORECAST_DEALS_COLUMNS,
            )
            # Only the previous run's rows: the table grows by a forecast every day.
            previous = conn.sql(
                "SELECT * FROM marts.forecast_history_deals WHERE as_of_date = "
                "(SELECT max(as_of_date) FROM marts.forecast_history_deals WHERE as_of_date < $as_of)",
                params={"as_of": as_of},
            ).pl()
            previous_as_of = previous.get_column("as_of_date").max() if previous.height else None
            # The states of the deals the two runs hold, not of every deal.
            spells, _ = load_funnel_spells(
                conn, pl.concat([previous.select("deal_id"), deals.select("deal_id")])
            )
            changes = forecast_changes(
                previous.lazy(), deals.lazy(), deal_states_at(spells, cutoff_for(as_of))
            ).collect()
            replace_table(
                conn, "marts", "forecast_changes", changes, d.FORECAST_CHANGES, d.FORECAST_CHANGES_COLUMNS
            )
            runs = conn.sql("SELECT count(DISTINCT as_of_date) FROM marts.forecast_history").fetchall()[0][0]
        by_type = changes.group_by("change_type").agg(
            deals=pl.len(), contribution=pl.col("contribution").sum()
        )
        table = ["| change | deals | contribution (EUR) |", "|---|---:|---:|"] + [
            f"| {t} | {n} | {c:,.0f} |" for t, n, c in by_type.sort("contribution").iter_rows()
        ]
        yield dg.MaterializeResult(
            asset_key=FORECAST_HISTORY, metadata={"dagster/row_count": periods.height, "runs_kept": runs}
        )
        yield dg.MaterializeResult(
            asset_key=FORECAST_HISTORY_DEALS, metadata={"dagster/row_count": deals.height}
        )
        yield dg.MaterializeResult(
            asset_key=FORECAST_CHANGES,
            metadata={
                "dagster/row_count": changes.height,
                "previous_as_of_date": str(previous_as_of) if previous_as_of else "none (first run)",
                "changes": dg.MetadataValue.md("\n".join(table)),
            },
        )

    return [pipeline_forecast, forecast_backtest, forecast_history]
