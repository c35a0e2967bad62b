"""The Dagster definitions of the warehouse: `dagster dev -m orchestration.definitions` (see `make ui`)."""

from __future__ import annotations

import dagster as dg

from data.contract import load_contract
from orchestration.defs.dbt.assets import build_dbt_assets, dbt_cli_resource, prepared_dbt_project
from orchestration.defs.ingestion.assets import build_ingestion_assets
from orchestration.defs.ingestion.checks import build_contract_checks
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource
from orchestration.settings import Environment, environment

MAIN_JOB = "daily_warehouse"


def build_definitions(env: Environment) -> dg.Definitions:
    contract = load_contract()
    partitions = daily_extract_partitions(env.first_extract_date)
    dbt_project = prepared_dbt_project(env.dbt_target_dir)
    assets = [*build_ingestion_assets(contract, partitions), build_dbt_assets(dbt_project, partitions)]
    checks = build_contract_checks(contract, partitions)
    main_job = dg.define_asset_job(
        MAIN_JOB,
        selection=dg.AssetSelection.all(include_sources=False),
        partitions_def=partitions,
        description="Everything, for one extract date or (as a single-run backfill) a range of them.",
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[main_job],
        resources={
            "dbt": dbt_cli_resource(dbt_project),
            "warehouse": WarehouseResource(
                duckdb_path=str(env.warehouse_path),
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
