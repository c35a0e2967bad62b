"""The Dagster definitions of the warehouse: `dagster dev -m orchestration.definitions` (see `make ui`)."""

import dagster as dg

from data.contract import load_contract
from orchestration.defs.action_plan.assets import build_action_plan_assets
from orchestration.defs.action_plan.checks import build_action_plan_checks
from orchestration.defs.client_base.assets import build_client_base_assets
from orchestration.defs.client_base.checks import build_client_base_checks
from orchestration.defs.dbt.assets import build_dbt_assets, dbt_cli_resource, prepared_dbt_project
from orchestration.defs.forecast.assets import build_forecast_assets
from orchestration.defs.forecast.checks import build_forecast_checks
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


def build_definitions(env: Environment) -> dg.Definitions:
    contract = load_contract()
    partitions = daily_extract_partitions(env.first_extract_date)
    dbt_project = prepared_dbt_project(env.dbt_target_dir)
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
        selection=dg.AssetSelection.all(include_sources=False),
        partitions_def=partitions,
        description="Everything, for one extract date or (as a single-run backfill) a range of them: "
        "ingest, check, model, compute, publish.",
    )
    raw_assets = [a for a in ingestion if a.key in raw_keys]
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
        jobs=[main_job],
        schedules=[build_daily_schedule(main_job, partitions, env.schedule_cron, env.schedule_timezone)],
        sensors=[
            build_extract_sensor(main_job, partitions, env.extract_settle_seconds),
            build_blocked_publication_sensor(main_job),
            freshness_sensor,
        ],
        resources={
            "dbt": dbt_cli_resource(dbt_project),
            "warehouse": WarehouseResource(
                duckdb_path=str(env.warehouse_path),
                published_path=str(env.published_path),
                export_parquet=env.export_parquet,
                landing_dir=str(env.landing_dir),
                memory_limit=env.memory_limit,
                threads=env.threads,
                temp_directory=str(env.temp_directory),
            ),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(environment())
