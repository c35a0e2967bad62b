"""Great Expectations suites run as blocking Dagster asset checks on every raw table."""

import json
from datetime import UTC, datetime

import dagster as dg

from data.contract import Contract, Table
from expectations.runner import to_records, validate_relation
from ingestion.warehouse import record_check_results
from orchestration.defs.ingestion.assets import raw_asset_key
from orchestration.partitions import WRITER_POOL
from orchestration.resources import WarehouseResource

CHECK_NAME = "contract_expectations"


def contract_check_spec(table: Table, partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name=CHECK_NAME,
        asset=raw_asset_key(table.name),
        description=f"The Great Expectations suite of {table.name} (schema, keys, allowed values, ranges, "
        "date order) on the rows of the partitions just loaded. ERROR failures block downstream assets.",
        blocking=True,
        partitions_def=partitions_def,
    )


def validate_partition(conn, table: Table, keys: list[str], run_id: str) -> dg.AssetCheckResult:
    """Run the suite of `table` on the rows of the partitions `keys`, record the results in
    quality.check_results, and return them as the table's check result."""
    # Lazy: validate_relation reads it in bounded batches. A filter, not a join with the key list, so
    # the rows come in table order every time it is read (DuckDB keeps the order through WHERE; a join
    # may not), as the examples of uniqueness failures need.
    relation = conn.sql(
        f"SELECT * FROM raw.{table.name} WHERE list_contains($keys, CAST(_extract_date AS VARCHAR))",
        params={"keys": keys},
    )
    result = validate_relation(table.name, relation)
    record_check_results(
        conn, run_id, datetime.now(UTC).replace(tzinfo=None), keys, result.n_rows, to_records(result)
    )
    failed = [outcome for outcome in result.results if not outcome.success]
    return dg.AssetCheckResult(
        asset_key=raw_asset_key(table.name),
        check_name=CHECK_NAME,
        passed=result.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": result.n_rows,
            "expectations": len(result.results),
            "failed": dg.MetadataValue.json(
                [
                    {
                        "expectation": o.expectation,
                        "columns": o.columns,
                        "severity": o.severity,
                        "unexpected_count": o.unexpected_count,
                        "examples": json.loads(json.dumps(o.examples, default=str)),
                    }
                    for o in failed
                ]
            ),
        },
    )


def build_contract_checks(
    contract: Contract, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """One check per raw table, all evaluated in one step: each step runs in a process of its own, and
    ten processes for ten small checks cost more than the checks. Subsettable, so one table's check can
    still be run alone (the UI, a selection of one raw asset)."""
    tables = {raw_asset_key(table.name): table for table in contract.tables.values()}

    @dg.multi_asset_check(
        name="raw_contract_expectations",
        specs=[contract_check_spec(table, partitions_def) for table in tables.values()],
        can_subset=True,
        pool=WRITER_POOL,
    )
    def _contract_expectations(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        keys = list(context.partition_keys)
        selected = {check_key.asset_key for check_key in context.selected_asset_check_keys}
        with warehouse.connect() as conn:
            for asset_key, table in tables.items():
                if asset_key in selected:
                    yield validate_partition(conn, table, keys, context.run.run_id)

    return [_contract_expectations]
