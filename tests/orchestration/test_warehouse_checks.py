"""Several warehouse checks evaluated in one step: each result under its own asset and name, a failing
blocking check still holds back what is downstream of its asset, and one check can be run alone."""

import dagster as dg

from orchestration.defs.warehouse_checks import check_step, warehouse_check
from orchestration.resources import WarehouseResource

A, B, C = dg.AssetKey(["marts", "a"]), dg.AssetKey(["marts", "b"]), dg.AssetKey(["marts", "c"])


def _table(key: dg.AssetKey, values: str):
    @dg.asset(key=key, deps=[B] if key == C else [])
    def _write(warehouse: WarehouseResource) -> None:
        with warehouse.connect() as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
            conn.execute(
                f"CREATE OR REPLACE TABLE marts.{key.path[-1]} AS SELECT * FROM (VALUES {values}) t(x)"
            )

    return _write


def _no_nulls(key: dg.AssetKey):
    def evaluate(context, conn) -> dg.AssetCheckResult:
        (nulls,) = conn.execute(f"SELECT count(*) FROM marts.{key.path[-1]} WHERE x IS NULL").fetchone()
        return dg.AssetCheckResult(passed=nulls == 0, metadata={"nulls": nulls})

    return warehouse_check(key, "no_nulls", f"No null x in {key.path[-1]}.", None, evaluate)


def _definitions(tmp_path):
    step = check_step("marts_checks", [_no_nulls(A), _no_nulls(B)])
    assets = [_table(A, "(1), (2)"), _table(B, "(1), (NULL), (NULL)"), _table(C, "(3)")]
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "w.duckdb"), landing_dir=str(tmp_path))
    return assets, step, {"warehouse": warehouse}


def test_each_result_under_its_own_check_and_a_failure_blocks_downstream(tmp_path):
    assets, step, resources = _definitions(tmp_path)
    result = dg.materialize([*assets, step], resources=resources, raise_on_error=False)
    evaluations = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {(A, "no_nulls"), (B, "no_nulls")}
    assert evaluations[(A, "no_nulls")].passed
    assert not evaluations[(B, "no_nulls")].passed
    assert evaluations[(B, "no_nulls")].metadata["nulls"].value == 2
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert C not in materialized  # downstream of the failed blocking check on b
    assert {A, B} <= {e.asset_key for e in result.get_asset_materialization_events()}


def test_one_check_of_the_step_runs_alone(tmp_path):
    assets, step, resources = _definitions(tmp_path)
    dg.materialize(assets[:2], resources=resources)
    result = dg.materialize(
        [*assets, step],
        resources=resources,
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(A, "no_nulls")),
    )
    assert [(e.asset_key, e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
        (A, "no_nulls", True)
    ]
