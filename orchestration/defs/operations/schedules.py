"""The daily schedule, the sensor that starts a run when an extract folder lands, and freshness checks."""

import time
from collections.abc import Sequence

import dagster as dg

from ingestion.landing import landed_extracts
from orchestration.resources import WarehouseResource


def build_daily_schedule(
    job,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    cron: str,
    timezone: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="daily_warehouse_schedule",
        cron_schedule=cron,
        execution_timezone=timezone,
        job=job,
        description=f"The whole graph on the newest extract date, at `{cron}` ({timezone}).",
    )
    def daily_warehouse_schedule(context: dg.ScheduleEvaluationContext):
        key = partitions_def.get_last_partition_key(current_time=context.scheduled_execution_time)
        return dg.RunRequest(partition_key=key)

    return daily_warehouse_schedule


def build_extract_sensor(
    job,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    settle_seconds: float,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="extract_landed_sensor",
        job=job,
        minimum_interval_seconds=60,
        description="Starts a run for an extract folder once it has landed (no file written for "
        f"{settle_seconds:.0f} s), and again when a corrected file replaces one.",
    )
    def extract_landed_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
        known = set(partitions_def.get_partition_keys())
        requests = []
        for landed in landed_extracts(warehouse.landing_path, time.time(), settle_seconds):
            key = landed.extract_date.isoformat()
            if key not in known:
                context.log.warning(f"extract folder {key} is outside the partitions; not loaded")
                continue
            # The run key changes with the files, so a corrected extract runs again; an unchanged one never.
            requests.append(dg.RunRequest(partition_key=key, run_key=f"{key}:{landed.fingerprint}"))
        return requests or dg.SkipReason("no new or corrected extract folder")

    return extract_landed_sensor


def build_freshness(
    raw_assets: Sequence[dg.AssetsDefinition], deadline_cron: str, timezone: str
) -> tuple[Sequence[dg.AssetChecksDefinition], dg.SensorDefinition]:
    """Each day's raw partitions must be loaded by the deadline (a WARN check on the raw assets)."""
    checks = dg.build_time_partition_freshness_checks(
        assets=list(raw_assets), deadline_cron=deadline_cron, timezone=timezone
    )
    return checks, dg.build_sensor_for_freshness_checks(freshness_checks=checks)
