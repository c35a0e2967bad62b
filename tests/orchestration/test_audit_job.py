"""The weekly audit job: the forecast's reproducibility check, which recomputes the whole simulation, runs
there instead of in every daily run."""

import shutil
from dataclasses import replace

import dagster as dg
import duckdb

from orchestration.definitions import AUDIT_JOB, MAIN_JOB, build_definitions
from orchestration.defs.forecast.checks import FORECAST_REPRODUCIBLE


def _copy(env, tmp_path):
    copy = replace(env, warehouse_path=tmp_path / "funnel.duckdb", dbt_target_dir=tmp_path / "dbt_target")
    shutil.copy(env.warehouse_path, copy.warehouse_path)
    return copy


def test_the_daily_job_leaves_the_reproducibility_audit_to_the_weekly_job(sample_warehouse):
    definitions = build_definitions(sample_warehouse)
    daily = definitions.resolve_job_def(MAIN_JOB).asset_layer.asset_graph.asset_check_keys
    audit = definitions.resolve_job_def(AUDIT_JOB).asset_layer.asset_graph.asset_check_keys
    assert FORECAST_REPRODUCIBLE not in daily and len(daily) > 20
    assert audit == {FORECAST_REPRODUCIBLE}
    schedules = {s.name: s for s in definitions.schedules}
    assert schedules["forecast_audit_schedule"].cron_schedule == sample_warehouse.audit_cron == "0 7 * * 0"


def test_the_audit_passes_on_the_written_forecast_and_fails_on_a_changed_one(sample_warehouse, tmp_path):
    env = _copy(sample_warehouse, tmp_path)
    assert _audit(env) == {FORECAST_REPRODUCIBLE.name: True}

    with duckdb.connect(str(env.warehouse_path)) as conn:
        conn.execute(
            "UPDATE marts.pipeline_forecast SET revenue_p50 = revenue_p50 + 1 "
            "WHERE period_start = (SELECT min(period_start) FROM marts.pipeline_forecast)"
        )
    assert _audit(env) == {FORECAST_REPRODUCIBLE.name: False}


def _audit(env) -> dict[str, bool]:
    result = (
        build_definitions(env)
        .resolve_job_def(AUDIT_JOB)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
