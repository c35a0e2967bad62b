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


def build_contract_check(table: Table, partitions_def: dg.PartitionsDefinition) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=raw_asset_key(table.name),
        name="contract_expectations",
        description=f"The Great Expectations suite of {table.name} (schema, keys, allowed values, ranges, "
        "date order) on the rows of the partitions just loaded. ERROR failures block downstream assets.",
        blocking=True,
        partitions_def=partitions_def,
        pool=WRITER_POOL,
    )
    def _contract_expectations(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        keys = list(context.partition_keys)
        with warehouse.connect() as conn:
            # Lazy: validate_relation reads it in bounded batches. A filter, not a join with the
            # key list, so the rows come in table order every time it is read (DuckDB keeps the
            # order through WHERE; a join may not), as the examples of uniqueness failures need.
            relation = conn.sql(
                f"SELECT * FROM raw.{table.name} WHERE list_contains($keys, CAST(_extract_date AS VARCHAR))",
                params={"keys": keys},
            )
            result = validate_relation(table.name, relation)
            record_check_results(
                conn,
                context.run.run_id,
                datetime.now(UTC).replace(tzinfo=None),
                keys,
                result.n_rows,
                to_records(result),
            )
        failed = [outcome for outcome in result.results if not outcome.success]
        return dg.AssetCheckResult(
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

    return _contract_expectations


def build_contract_checks(
    contract: Contract, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    return [build_contract_check(table, partitions_def) for table in contract.tables.values()]
