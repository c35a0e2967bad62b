"""Ingestion assets: one per extract table of the contract (loaded in one step), plus the cross-table
integrity findings."""

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


RAW_STEP = "raw_extracts"


def build_raw_assets(contract: Contract, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One asset per extract table, all loaded in one step (subsettable: a table can be loaded alone).
    One step because each step runs in a process of its own (about 0.35 s each) and the loads run one
    after another anyway (one writer). A load that fails fails the step; the tables loaded before it
    in the step are materialized, the others are not, and the downstream assets do not run."""
    tables = {raw_asset_key(table.name): table for table in contract.tables.values()}

    @dg.multi_asset(
        name=RAW_STEP,
        specs=[
            dg.AssetSpec(
                key,
                description=f"{table.description} Grain in raw: every valid row of every extract "
                f"({table.grain} and extract date); rows that break the contract are in quality.quarantine.",
                group_name="ingestion",
                kinds={"duckdb"},
                metadata={"contract_version": contract.version, "source": table.source},
            )
            for key, table in tables.items()
        ],
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
    )
    def raw_extracts(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
        dates = partition_dates(context)
        missing_folders = [
            d.isoformat() for d in dates if not extract_folder(warehouse.landing_path, d).is_dir()
        ]
        if missing_folders:
            # No extract that day (a weekend, a holiday): the rows loaded before stay as they are.
            context.log.warning(
                f"no extract folder for {', '.join(missing_folders)} under "
                f"{warehouse.landing_path}: nothing loaded for those dates"
            )
        with warehouse.connect() as conn:
            ensure_schemas(conn, contract)
            for key, table in tables.items():
                if key not in context.selected_asset_keys:
                    continue
                yield _load_table(context, conn, warehouse, table, dates, loaded_at, missing_folders)

    return raw_extracts


def _load_table(
    context, conn, warehouse, table: Table, dates, loaded_at, missing_folders
) -> dg.MaterializeResult:
    loads: list[TableLoad] = []
    for extract_date in dates:
        if extract_date.isoformat() in missing_folders:
            continue
        load = load_extract_table(conn, table, warehouse.landing_path, extract_date, loaded_at)
        if load.ignored_columns:
            context.log.warning(
                f"{load.source_file}: columns not in the contract, ignored: {', '.join(load.ignored_columns)}"
            )
        loads.append(load)
    total_rows = conn.execute(f"SELECT count(*) FROM raw.{table.name}").fetchall()[0][0]
    quarantined = Counter()
    for load in loads:
        quarantined.update(load.quarantined)
    return dg.MaterializeResult(
        asset_key=raw_asset_key(table.name),
        metadata={
            "rows_loaded": sum(load.rows_loaded for load in loads),
            "rows_quarantined": sum(quarantined.values()),
            "quarantined_by_rule": dict(quarantined),
            "dagster/row_count": total_rows,
            "extract_dates_without_folder": missing_folders,
            "loads": dg.MetadataValue.md(_loads_table(loads)),
        },
    )


def build_integrity_asset(contract: Contract, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=INTEGRITY_KEY,
        description="Cross-table integrity findings (unknown stage, event before the deal was created, ...): "
        "one row per record and rule, over the latest version of every key in raw (kept in integrity_state; "
        "only the keys of extract dates loaded since the last run are ranked again, and the rules look again "
        "only at the records those changes can affect).",
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
            refresh = refresh_integrity_issues(conn, contract, datetime.now(UTC).replace(tzinfo=None))
        context.log.info(f"integrity findings: {refresh.counts}")
        return dg.MaterializeResult(
            metadata={
                "findings_by_rule": refresh.counts,
                "dagster/row_count": sum(refresh.counts.values()),
                # Which raw tables changed since the last run, and how much was ranked again for them.
                "extract_dates_ranked_again": {
                    table: "all (rebuilt)" if dates < 0 else dates
                    for table, dates in refresh.dates_ranked.items()
                    if dates
                },
                # Whether every record was looked at again (and why), or how many per table.
                "rules_looked_at": refresh.full_reason or "changed records only",
                "records_looked_at_again": {
                    table: "all" if records < 0 else records
                    for table, records in refresh.records_checked.items()
                },
            }
        )

    return _integrity_issues


def build_ingestion_assets(
    contract: Contract, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    return [build_raw_assets(contract, partitions_def), build_integrity_asset(contract, partitions_def)]
