"""Ingestion assets: one per extract table of the contract, plus the cross-table integrity findings."""

from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from data.contract import Contract, Table
from ingestion.integrity import refresh_integrity_issues
from ingestion.load import TableLoad, extract_folder, load_extract_table
from ingestion.warehouse import ensure_schemas
from orchestration.partitions import WRITER_POOL, partition_dates
from orchestration.resources import WarehouseResource

INTEGRITY_KEY = dg.AssetKey(["quality", "integrity_issues"])


def raw_asset_key(table_name: str) -> dg.AssetKey:
    # [source name, table name]: the key dagster-dbt gives the dbt source raw.<table>.
    return dg.AssetKey(["raw", table_name])


def _loads_table(loads: list[TableLoad]) -> str:
    lines = ["| extract date | file | read | loaded | quarantined |", "|---|---|---|---|---|"]
    for load in loads:
        rules = ", ".join(f"{rule}: {n}" for rule, n in load.quarantined.items()) or "0"
        lines.append(
            f"| {load.extract_date} | {load.source_file or '(no file)'} | {load.rows_read} | "
            f"{load.rows_loaded} | {rules} |"
        )
    return "\n".join(lines)


def build_raw_asset(
    contract: Contract, table: Table, partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_asset_key(table.name),
        description=f"{table.description} Grain in raw: every valid row of every extract ({table.grain} "
        "and extract date); rows that break the contract are in quality.quarantine.",
        group_name="ingestion",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        kinds={"duckdb"},
        metadata={"contract_version": contract.version, "source": table.source},
    )
    def _raw_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        loads: list[TableLoad] = []
        missing_folders = []
        with warehouse.connect() as conn:
            ensure_schemas(conn, contract)
            for extract_date in partition_dates(context):
                if not extract_folder(warehouse.landing_path, extract_date).is_dir():
                    # No extract that day (a weekend, a holiday): the rows loaded before stay as they are.
                    missing_folders.append(extract_date.isoformat())
                    continue
                load = load_extract_table(conn, table, warehouse.landing_path, extract_date, loaded_at)
                if load.ignored_columns:
                    context.log.warning(
                        f"{load.source_file}: columns not in the contract, ignored: "
                        f"{', '.join(load.ignored_columns)}"
                    )
                loads.append(load)
            total_rows = conn.execute(f"SELECT count(*) FROM raw.{table.name}").fetchall()[0][0]
        if missing_folders:
            context.log.warning(
                f"no extract folder for {', '.join(missing_folders)} under "
                f"{warehouse.landing_path}: nothing loaded for those dates"
            )
        quarantined = Counter()
        for load in loads:
            quarantined.update(load.quarantined)
        return dg.MaterializeResult(
            metadata={
                "rows_loaded": sum(load.rows_loaded for load in loads),
                "rows_quarantined": sum(quarantined.values()),
                "quarantined_by_rule": dict(quarantined),
                "dagster/row_count": total_rows,
                "extract_dates_without_folder": missing_folders,
                "loads": dg.MetadataValue.md(_loads_table(loads)),
            }
        )

    return _raw_table


def build_integrity_asset(contract: Contract, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=INTEGRITY_KEY,
        description="Cross-table integrity findings (unknown stage, event before the deal was created, ...): "
        "one row per record and rule, recomputed over the latest version of every key in raw.",
        group_name="ingestion",
        deps=[raw_asset_key(name) for name in contract.tables],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        kinds={"duckdb"},
    )
    def _integrity_issues(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        with warehouse.connect() as conn:
            ensure_schemas(conn, contract)
            counts = refresh_integrity_issues(conn, contract, datetime.now(UTC).replace(tzinfo=None))
        context.log.info(f"integrity findings: {counts}")
        return dg.MaterializeResult(
            metadata={"findings_by_rule": counts, "dagster/row_count": sum(counts.values())}
        )

    return _integrity_issues


def build_ingestion_assets(
    contract: Contract, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    assets = [build_raw_asset(contract, table, partitions_def) for table in contract.tables.values()]
    return [*assets, build_integrity_asset(contract, partitions_def)]
