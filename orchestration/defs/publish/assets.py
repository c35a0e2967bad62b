"""Write, audit, publish: the BI-facing copy of the warehouse, swapped in only after every blocking
check upstream passed, and a record of why when a run was blocked."""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import dagster as dg

from ingestion.publish import export_parquet, publish, record_blocked
from orchestration.partitions import WRITER_POOL, partition_as_of
from orchestration.resources import WarehouseResource

PUBLISHED_KEY = dg.AssetKey(["published", "warehouse"])


def build_publish_asset(
    upstream: Sequence[dg.AssetKey], partitions_def: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    @dg.asset(
        key=PUBLISHED_KEY,
        description="The read-only DuckDB file BI tools open: the marts and quality schemas of the working "
        "warehouse, copied once every upstream blocking check passed (into a copy of the last version, only "
        "the rows that changed) and swapped in atomically.",
        group_name="publish",
        deps=list(upstream),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        kinds={"duckdb"},
    )
    def published_warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        now = datetime.now(UTC).replace(tzinfo=None)
        with warehouse.connect() as conn:
            publication = publish(
                conn, warehouse.published_file, context.run.run_id, partition_as_of(context), now
            )
            parquet = {}
            if warehouse.export_parquet:
                link = export_parquet(conn, publication, warehouse.published_file.parent / "parquet")
                parquet = {"parquet": dg.MetadataValue.path(str(link))}
        return dg.MaterializeResult(
            metadata={
                **parquet,
                "path": dg.MetadataValue.path(str(publication.path)),
                "version": publication.version,
                "tables": publication.tables,
                "dagster/row_count": publication.rows,
                # A later publication starts from the published file: what it had to write.
                "tables written whole": publication.tables_written_whole,
                "written whole": ", ".join(publication.written_whole),
                "rows deleted in place": publication.rows_deleted,
                "rows inserted in place": publication.rows_inserted,
            }
        )

    return published_warehouse


def failure_reasons(events: Iterable[dg.DagsterEvent]) -> str:
    """Why a run did not publish, from its events: failed ERROR checks first, then failed steps."""
    reasons = []
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
                key = evaluation.asset_check_key
                reasons.append(f"check {key.asset_key.to_user_string()}:{key.name} failed")
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            cause = error.cause or error
            reasons.append(f"step {event.step_key} failed: {cause.message.strip().splitlines()[0][:300]}")
    return "; ".join(reasons) or "the run failed before publication"


def record_failed_run(warehouse: WarehouseResource, run_id: str, events: Iterable[dg.DagsterEvent]) -> str:
    reason = failure_reasons(events)
    with warehouse.connect() as conn:
        record_blocked(
            conn, warehouse.published_file, run_id, None, reason, datetime.now(UTC).replace(tzinfo=None)
        )
    return reason


def build_blocked_publication_sensor(job) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="record_blocked_publication",
        monitored_jobs=[job],
        description="When a run of the warehouse job fails, the published data stays as it was; this records "
        "why in quality.publication_log (working and published files), so BI can show it.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def record_blocked_publication(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
        events = [
            record.dagster_event
            for record in context.instance.all_logs(context.dagster_run.run_id)
            if record.dagster_event is not None
        ]
        reason = record_failed_run(warehouse, context.dagster_run.run_id, events)
        context.log.info(f"publication blocked: {reason}")

    return record_blocked_publication
