"""Funnel tables in schema `marts`: each asset reads the dbt marts, calls one function of `transforms/`,
writes the documented table and shows its headline in the UI."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl

from ingestion.frames import read_frame, replace_table
from orchestration.partitions import WRITER_POOL, partition_as_of
from orchestration.resources import WarehouseResource
from transforms import funnel_columns as columns
from transforms.funnel import (
    DEAL_FACTS,
    DEAL_SOURCES,
    funnel_cohorts_from_tables,
    funnel_conversion_from_tables,
    materialize_deal_facts,
)
from transforms.lead_requirements import RateSettings, lead_requirements_from_tables
from transforms.segment_focus import FocusSettings, segment_focus_from_tables
from transforms.sql import tables

FUNNEL_CONVERSION_KEY = dg.AssetKey(["marts", "funnel_conversion"])
FUNNEL_COHORTS_KEY = dg.AssetKey(["marts", "funnel_cohorts"])
LEAD_REQUIREMENTS_KEY = dg.AssetKey(["marts", "lead_requirements"])
SEGMENT_FOCUS_KEY = dg.AssetKey(["marts", "segment_focus"])
DEAL_FACTS_KEY = dg.AssetKey(["shared", "deal_facts"])
"""Tables shared.outcomes and shared.deal_reach, and shared.deal_facts_run (what they were built for)."""
DEAL_FACTS_SCHEMA = "shared"
DEAL_FACTS_RELATIONS = {name: f"{DEAL_FACTS_SCHEMA}.{name}" for name in DEAL_FACTS}
DEAL_FACTS_RUN = f"{DEAL_FACTS_SCHEMA}.deal_facts_run"

# (schema, relation) of every dbt model the funnel reads.
SOURCES = {
    "transitions": ("marts", "fct_stage_transitions"),
    "dim_deals": ("marts", "dim_deals"),
    "dim_clients": ("marts", "dim_clients"),
    "stages": ("staging", "stg_crm__stages"),
    "targets": ("staging", "stg_planning__targets"),
}
SOURCE_KEYS = [dg.AssetKey(list(relation)) for relation in SOURCES.values()]


class FunnelCohortsConfig(dg.Config):
    maturity_days: int = 180
    """A cohort is mature once its youngest deal has had this many days to close."""


class LeadRequirementsConfig(dg.Config):
    rate_window_months: int = 12
    """Months of stage reaches before the as-of date the rates are learned from."""
    prior_strength: float = 20.0
    """Pseudo-deals of the business line's rate a segment's rate starts from (beta-binomial shrinkage)."""
    amount_prior_deals: float = 5.0
    """Pseudo-deals of the line's average won deal a segment's average starts from."""
    interval: float = 0.9
    """Coverage of the rate intervals."""
    min_won_for_timing: int = 5
    """Won deals a segment needs for its own days-to-won; below, the line's."""
    inflow_months: int = 3
    """Months of new leads the recent inflow is averaged over."""


class SegmentFocusConfig(dg.Config):
    capacity_factor: float = 1.0
    """Lead capacity = today's total inflow per month x this."""
    floor_share: float = 0.5
    """No segment gets fewer leads than this share of its inflow today."""
    ceiling_factor: float = 2.0
    """No segment gets more leads than this multiple of its inflow today."""
    recent_months: int = 3
    baseline_months: int = 12
    drop_threshold: float = 0.3
    """Relative drop of inflow or win rate that, if significant, raises an early warning."""
    p_value_threshold: float = 0.05
    period_start: str | None = None
    """Focus target period (YYYY-MM-DD); default the first that starts after the as-of date."""


def _deal_relations() -> dict[str, str]:
    """The large sources, read by the transforms' SQL in the warehouse (only what each query needs)."""
    return {name: ".".join(SOURCES[name]) for name in DEAL_SOURCES}


def _small(conn: duckdb.DuckDBPyConnection, name: str) -> pl.LazyFrame:
    return read_frame(conn, *SOURCES[name]).lazy()


# What the deal facts are computed from: a materialization of one of these after the facts makes them stale.
DEAL_FACTS_INPUTS = [dg.AssetKey(list(SOURCES[name])) for name in (*DEAL_SOURCES, "stages")]


def shared_deal_facts(
    context: dg.AssetExecutionContext, conn: duckdb.DuckDBPyConnection, as_of: date
) -> dict[str, str]:
    """The deal facts (`transforms.funnel.materialize_deal_facts` with `store_in`) as sources for
    `tables`, when the deal_facts step of this same run wrote them for this as-of date and none of their
    inputs was materialized since (by this run or another); otherwise none, and the transform computes
    them itself, as when a mart is materialized on its own. Six marts read them: computing them once
    saves the other five."""
    instance = context.instance
    facts = instance.get_latest_materialization_event(DEAL_FACTS_KEY)
    if facts is None or facts.run_id != context.run_id:
        return {}
    for key in DEAL_FACTS_INPUTS:
        event = instance.get_latest_materialization_event(key)
        if event is not None and event.timestamp > facts.timestamp:
            return {}
    try:
        built = conn.execute(f"SELECT run_id, as_of_date FROM {DEAL_FACTS_RUN}").fetchall()
    except duckdb.CatalogException:
        return {}
    if built != [(context.run_id, as_of)]:
        return {}
    return DEAL_FACTS_RELATIONS


def deal_facts_metadata(shared: dict[str, str]) -> dict[str, str]:
    return {"deal_facts": "read from shared.deal_facts" if shared else "computed by this step"}


def _markdown(frame: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=10_000,
        fmt_str_lengths=60,
        float_precision=3,
    ):
        return str(frame)


def _write(conn, key: dg.AssetKey, frame: pl.DataFrame, description: str, described: dict[str, str]) -> None:
    replace_table(conn, key.path[0], key.path[1], frame, description, described)


def conversion_headline(frame: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """The last complete quarter (the running one if none), every line, all segments."""
    quarters = frame.filter(pl.col("period_grain") == "quarter")
    complete = quarters.filter(pl.col("period_end") < as_of)
    last = (complete if complete.height else quarters)["period_start"].max()
    return quarters.filter((pl.col("period_start") == last) & (pl.col("segment") == "(all)")).select(
        "period_start",
        "business_line",
        "stage_id",
        "reached_count",
        "step_conversion",
        "conversion_to_won",
        "time_in_stage_median_days",
        "open_deal_count",
        "win_rate_count",
    )


def build_funnel_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    common = {
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": WRITER_POOL,
        "group_name": "funnel",
        "kinds": {"polars", "duckdb"},
    }

    @dg.asset(
        key=DEAL_FACTS_KEY,
        deps=DEAL_FACTS_INPUTS,
        description=(
            "The deal facts six marts share, as of the run's date: shared.outcomes (one row per deal with "
            "stage history: line, segment, amount, first entry, status, close time) and shared.deal_reach "
            "(one row per such deal: the earliest entry at or past each stage order, strict entries). "
            "Computed once per run instead of once per mart; a mart reads them only when they were built "
            "in its own run for its date, after their inputs (otherwise it computes them itself)."
        ),
        **common,
    )
    def deal_facts_tables(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {DEAL_FACTS_SCHEMA}")
            conn.execute("BEGIN TRANSACTION")
            try:
                with tables(conn, _deal_relations()) as deal_tables:
                    materialize_deal_facts(deal_tables, as_of, _small(conn, "stages"), DEAL_FACTS_SCHEMA)
                conn.execute(
                    f"CREATE OR REPLACE TABLE {DEAL_FACTS_RUN} AS SELECT ? AS run_id, ?::DATE AS as_of_date",
                    [context.run_id, as_of],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            rows = {
                name: conn.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
                for name, relation in DEAL_FACTS_RELATIONS.items()
            }
        return dg.MaterializeResult(
            metadata={"as_of_date": as_of.isoformat(), **{f"{name}_rows": n for name, n in rows.items()}}
        )

    @dg.asset(
        key=FUNNEL_CONVERSION_KEY,
        deps=[*SOURCE_KEYS, DEAL_FACTS_KEY],
        description=columns.FUNNEL_CONVERSION,
        **common,
    )
    def funnel_conversion_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """One row per period x business line x segment x stage; from fct_stage_transitions."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_deal_relations(), **shared}) as deal_tables:
                frame = funnel_conversion_from_tables(
                    deal_tables, _small(conn, "stages"), _small(conn, "targets"), as_of
                ).collect()
            _write(
                conn,
                FUNNEL_CONVERSION_KEY,
                frame,
                columns.FUNNEL_CONVERSION,
                columns.FUNNEL_CONVERSION_COLUMNS,
            )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "last_quarter": dg.MetadataValue.md(_markdown(conversion_headline(frame, as_of))),
            }
        )

    @dg.asset(
        key=FUNNEL_COHORTS_KEY,
        deps=[*SOURCE_KEYS, DEAL_FACTS_KEY],
        description=columns.FUNNEL_COHORTS,
        **common,
    )
    def funnel_cohorts_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: FunnelCohortsConfig
    ) -> dg.MaterializeResult:
        """One row per cohort month of funnel entry x business line x segment; from fct_stage_transitions."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_deal_relations(), **shared}) as deal_tables:
                frame = funnel_cohorts_from_tables(
                    deal_tables, _small(conn, "targets"), as_of, maturity_days=config.maturity_days
                ).collect()
            _write(conn, FUNNEL_COHORTS_KEY, frame, columns.FUNNEL_COHORTS, columns.FUNNEL_COHORTS_COLUMNS)
        recent = frame.filter((pl.col("business_line") == "(all)") & (pl.col("segment") == "(all)")).tail(8)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "recent_cohorts": dg.MetadataValue.md(
                    _markdown(recent.drop("business_line", "segment", "won_amount_reporting"))
                ),
            }
        )

    @dg.asset(
        key=LEAD_REQUIREMENTS_KEY,
        deps=[*SOURCE_KEYS, DEAL_FACTS_KEY],
        description=columns.LEAD_REQUIREMENTS,
        **common,
    )
    def lead_requirements_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: LeadRequirementsConfig
    ) -> dg.MaterializeResult:
        """One row per target period x business line x segment x stage; from targets and funnel marts."""
        as_of = partition_as_of(context)
        settings = RateSettings(**config.model_dump())
        with warehouse.connect() as conn:
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_deal_relations(), **shared}) as deal_tables:
                frame = lead_requirements_from_tables(
                    deal_tables, _small(conn, "stages"), _small(conn, "targets"), as_of, settings
                ).collect()
            _write(
                conn,
                LEAD_REQUIREMENTS_KEY,
                frame,
                columns.LEAD_REQUIREMENTS,
                columns.LEAD_REQUIREMENTS_COLUMNS,
            )
        upcoming = frame.filter((pl.col("period_end") >= as_of) & (pl.col("stage_number") == 1))
        upcoming = upcoming.filter(pl.col("period_start") == upcoming["period_start"].min())
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "current_period": dg.MetadataValue.md(
                    _markdown(
                        upcoming.select(
                            "period_start",
                            "business_line",
                            "segment",
                            "revenue_target_reporting",
                            "won_so_far_reporting",
                            "leads_needed",
                            "conversion_to_won",
                            "effective_n",
                            "coverage",
                            "leads_needed_per_month",
                            "recent_inflow_per_month",
                        )
                    )
                ),
            }
        )

    @dg.asset(
        key=SEGMENT_FOCUS_KEY,
        deps=[*SOURCE_KEYS, LEAD_REQUIREMENTS_KEY, DEAL_FACTS_KEY],
        description=columns.SEGMENT_FOCUS,
        **common,
    )
    def segment_focus_table(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: SegmentFocusConfig
    ) -> dg.MaterializeResult:
        """One row per business line x segment; from marts.lead_requirements and the funnel marts."""
        as_of = partition_as_of(context)
        settings = FocusSettings(**config.model_dump(exclude={"period_start"}))
        period_start = date.fromisoformat(config.period_start) if config.period_start else None
        with warehouse.connect() as conn:
            requirements = read_frame(conn, *LEAD_REQUIREMENTS_KEY.path).lazy()
            shared = shared_deal_facts(context, conn, as_of)
            with tables(conn, {**_deal_relations(), **shared}) as deal_tables:
                frame = segment_focus_from_tables(
                    deal_tables, requirements, _small(conn, "targets"), as_of, settings, period_start
                ).collect()
            _write(conn, SEGMENT_FOCUS_KEY, frame, columns.SEGMENT_FOCUS, columns.SEGMENT_FOCUS_COLUMNS)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "as_of_date": as_of.isoformat(),
                **deal_facts_metadata(shared),
                "early_warnings": int(frame["is_early_warning"].sum()),
                "lead_mix": dg.MetadataValue.md(
                    _markdown(
                        frame.select(
                            "business_line",
                            "segment",
                            "value_per_lead_reporting",
                            "current_inflow_per_month",
                            "recommended_leads_per_month",
                            "is_target_reachable",
                            "warning_reason",
                        )
                    )
                ),
            }
        )

    return [
        deal_facts_tables,
        funnel_conversion_table,
        funnel_cohorts_table,
        lead_requirements_table,
        segment_focus_table,
    ]
