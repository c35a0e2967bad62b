"""Warehouse checks evaluated one step per checked asset: each result under its own check, a failing
blocking check still holds back what is downstream of its asset, an asset that fails leaves the other
assets' checks running, and one check can be run alone."""

import dagster as dg

from orchestration.defs.warehouse_checks import check_steps_per_asset, warehouse_check
from orchestration.resources import WarehouseResource

A, B, C, D = (dg.AssetKey(["marts", name]) for name in "abcd")


def _table(key: dg.AssetKey, values: str | None, deps: list[dg.AssetKey] | None = None):
    @dg.asset(key=key, deps=deps or [])
    def _write(warehouse: WarehouseResource) -> None:
        if values is None:
            raise RuntimeError(f"{key.path[-1]} cannot be built")
        with warehouse.connect() as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS marts")
            conn.execute(
                f"CREATE OR REPLACE TABLE marts.{key.path[-1]} AS SELECT * FROM (VALUES {values}) t(x)"
            )

    return _write


def _check(key: dg.AssetKey, name: str, condition: str):
    def evaluate(context, conn) -> dg.AssetCheckResult:
        (bad,) = conn.execute(f"SELECT count(*) FROM marts.{key.path[-1]} WHERE {condition}").fetchone()
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows": bad})

    return warehouse_check(key, name, f"No row of {key.path[-1]} with {condition}.", None, evaluate)


def _definitions(tmp_path):
    steps = check_steps_per_asset(
        [
            _check(A, "no_nulls", "x IS NULL"),
            _check(B, "no_nulls", "x IS NULL"),
            _check(A, "positive", "x <= 0"),
            _check(D, "no_nulls", "x IS NULL"),
        ]
    )
    assets = [
        _table(A, "(1), (2)"),
        _table(B, "(1), (NULL), (NULL)"),
        _table(C, "(3)", deps=[B]),
        _table(D, None),
    ]
    warehouse = WarehouseResource(duckdb_path=str(tmp_path / "w.duckdb"), landing_dir=str(tmp_path))
    return assets, steps, {"warehouse": warehouse}


def test_one_step_per_asset_each_result_under_its_own_check(tmp_path):
    assets, steps, resources = _definitions(tmp_path)
    assert [step.node_def.name for step in steps] == ["a_checks", "b_checks", "d_checks"]
    result = dg.materialize([*assets, *steps], resources=resources, raise_on_error=False)
    evaluations = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
    # d failed to build: its check does not run, a's and b's do.
    assert set(evaluations) == {(A, "no_nulls"), (A, "positive"), (B, "no_nulls")}
    assert evaluations[(A, "no_nulls")].passed and evaluations[(A, "positive")].passed
    assert not evaluations[(B, "no_nulls")].passed
    assert evaluations[(B, "no_nulls")].metadata["rows"].value == 2
    materialized = {m.asset_key for m in result.get_asset_materialization_events()}
    assert materialized == {A, B}  # c is downstream of b's failed blocking check


def test_one_check_of_a_step_runs_alone(tmp_path):
    assets, steps, resources = _definitions(tmp_path)
    dg.materialize(assets[:2], resources=resources)
    result = dg.materialize(
        [*assets, *steps],
        resources=resources,
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(A, "positive")),
    )
    assert [(e.asset_key, e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
        (A, "positive", True)
    ]
