"""The Dagster definitions of the warehouse: `dagster dev -m orchestration.definitions` (see `make ui`)."""

import functools

import dagster as dg

from data.contract import load_contract
from orchestration.defs.action_plan.assets import build_action_plan_assets
from orchestration.defs.action_plan.checks import build_action_plan_checks
from orchestration.defs.client_base.assets import build_client_base_assets
from orchestration.defs.client_base.checks import build_client_base_checks
from orchestration.defs.dbt.assets import build_dbt_assets, dbt_cli_resource, prepared_dbt_project
from orchestration.defs.forecast.assets import build_forecast_assets
from orchestration.defs.forecast.checks import FORECAST_REPRODUCIBLE, build_forecast_checks
from orchestration.defs.funnel.assets import build_funnel_assets
from orchestration.defs.funnel.checks import build_funnel_checks
from orchestration.defs.ingestion.assets import build_ingestion_assets, raw_asset_key
from orchestration.defs.ingestion.checks import build_contract_checks
from orchestration.defs.operations.schedules import (
    build_daily_schedule,
    build_extract_sensor,
    build_freshness,
)
from orchestration.defs.publish.assets import build_blocked_publication_sensor, build_publish_asset
from orchestration.defs.publish.report import build_report_asset
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource
from orchestration.settings import Environment, environment

MAIN_JOB = "daily_warehouse"
AUDIT_JOB = "forecast_audit"
# Checks that recompute a whole mart to audit it: weekly, in AUDIT_JOB, not in every daily run.
AUDIT_CHECKS = dg.AssetSelection.checks(FORECAST_REPRODUCIBLE)

# Each step in its own process, one at a time. One at a time because DuckDB allows one process per file
# (the pool `duckdb_writer` says the same to the instance). Own process so that the memory a step took
# (Polars, pandas for Great Expectations, DuckDB's buffer pool) goes back to the system when it ends
# instead of piling up in one long-lived process. A fork server that has already imported the
# definitions keeps the start of each step process short.
STEP_EXECUTOR = dg.multiprocess_executor.configured(
    {
        "max_concurrent": 1,
        "start_method": {"forkserver": {"preload_modules": ["orchestration.step_server"]}},
    },
    name="step_per_process",
)


def build_definitions(env: Environment) -> dg.Definitions:
    contract = load_contract()
    partitions = daily_extract_partitions(env.first_extract_date)
    warehouse = WarehouseResource(
        duckdb_path=str(env.warehouse_path),
        published_path=str(env.published_path),
        export_parquet=env.export_parquet,
        landing_dir=str(env.landing_dir),
        memory_limit=env.memory_limit,
        threads=env.threads,
        temp_directory=str(env.temp_directory),
    )
    dbt_project = prepared_dbt_project(env.dbt_target_dir, warehouse.settings())
    ingestion = build_ingestion_assets(contract, partitions)
    transformed = [
        build_dbt_assets(dbt_project, partitions),
        *build_funnel_assets(partitions),
        *build_forecast_assets(partitions),
        *build_client_base_assets(partitions),
        *build_action_plan_assets(partitions),
    ]
    raw_keys = {raw_asset_key(name) for name in contract.tables}
    upstream_of_publication = [
        key for assets_def in (*ingestion, *transformed) for key in assets_def.keys if key not in raw_keys
    ]
    publication = build_publish_asset(upstream_of_publication, partitions)

    main_job = dg.define_asset_job(
        MAIN_JOB,
        selection=dg.AssetSelection.all(include_sources=False) - AUDIT_CHECKS,
        partitions_def=partitions,
        executor_def=STEP_EXECUTOR,
        description="Everything, for one extract date or (as a single-run backfill) a range of them: "
        "ingest, check, model, compute, publish. The audit checks run weekly in forecast_audit.",
    )
    # Not partitioned: the audit recomputes what the warehouse holds now, as of the date it was written for.
    audit_job = dg.define_asset_job(
        AUDIT_JOB,
        selection=AUDIT_CHECKS,
        executor_def=STEP_EXECUTOR,
        description="Recomputes the live forecast from the same inputs and checks it equals the written "
        "table (the seeded simulation is reproducible). Weekly: it costs as much as the forecast itself.",
    )
    raw_assets = [a for a in ingestion if set(a.keys) & raw_keys]
    freshness_checks, freshness_sensor = build_freshness(
        raw_assets, env.freshness_deadline_cron, env.schedule_timezone
    )
    return dg.Definitions(
        assets=[*ingestion, *transformed, publication, build_report_asset(partitions)],
        asset_checks=[
            *build_contract_checks(contract, partitions),
            *build_funnel_checks(partitions),
            *build_forecast_checks(partitions),
            *build_client_base_checks(partitions),
            *build_action_plan_checks(partitions),
            *freshness_checks,
        ],
        jobs=[main_job, audit_job],
        schedules=[
            build_daily_schedule(main_job, partitions, env.schedule_cron, env.schedule_timezone),
            dg.ScheduleDefinition(
                name="forecast_audit_schedule",
                job=audit_job,
                cron_schedule=env.audit_cron,
                execution_timezone=env.schedule_timezone,
                description=f"The audit checks, at `{env.audit_cron}` ({env.schedule_timezone}).",
            ),
        ],
        sensors=[
            build_extract_sensor(main_job, partitions, env.extract_settle_seconds),
            build_blocked_publication_sensor(main_job),
            freshness_sensor,
        ],
        resources={
            "dbt": dbt_cli_resource(dbt_project),
            "warehouse": warehouse,
        },
    )


@functools.cache
def definitions_for(env: Environment) -> dg.Definitions:
    """The definitions of one environment, built once per process (and once for all step processes: the
    fork server builds them before it forks, see orchestration/step_server.py)."""
    return build_definitions(env)


@dg.definitions
def defs() -> dg.Definitions:
    return definitions_for(environment())


@functools.cache
def job_for(env: Environment) -> dg.JobDefinition:
    """The main job of one environment, resolved once per process (about 0.1 s a time, and each step
    process asks twice): the fork server resolves it before it forks."""
    return definitions_for(env).resolve_job_def(MAIN_JOB)


def daily_warehouse_job() -> dg.JobDefinition:
    """The main job, built from the environment: what `dg.reconstructable` gives each step process."""
    return job_for(environment())
