"""The ingestion assets and their checks, run through Dagster against a warehouse under tmp_path."""

from datetime import date

import dagster as dg
import duckdb
import pytest

from data.contract import load_contract
from orchestration.defs.ingestion.assets import build_ingestion_assets
from orchestration.defs.ingestion.checks import build_contract_checks
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource
from tests.ingestion.conftest import deal, write_csv


@pytest.fixture
def landing(tmp_path):
    land = tmp_path / "landing"
    write_csv(land / "2026-11-12" / "deals.csv", [deal(deal_id="D1"), deal(deal_id="D2", currency="")])
    write_csv(land / "2026-11-13" / "deals.csv", [deal(deal_id="D3")])
    return land


def build(tmp_path, landing):
    contract = load_contract()
    partitions = daily_extract_partitions(date(2026, 11, 12))
    assets = build_ingestion_assets(contract, partitions)
    checks = build_contract_checks(contract, partitions)
    warehouse = WarehouseResource(
        duckdb_path=str(tmp_path / "wh" / "funnel.duckdb"),
        landing_dir=str(landing),
        memory_limit="1GB",
        threads=1,
    )
    return [*assets, *checks], warehouse


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def counts(tmp_path) -> tuple:
    with duckdb.connect(str(tmp_path / "wh" / "funnel.duckdb"), read_only=True) as conn:
        return (
            conn.execute("SELECT count(*) FROM raw.deals").fetchall()[0][0],
            conn.execute("SELECT count(*) FROM quality.quarantine").fetchall()[0][0],
            conn.execute("SELECT count(*) FROM quality.check_results WHERE NOT success").fetchall()[0][0],
        )


def test_a_range_loads_in_one_run_and_a_rerun_changes_no_count(tmp_path, landing):
    definitions, warehouse = build(tmp_path, landing)

    first = dg.materialize(
        definitions, resources={"warehouse": warehouse}, tags=range_tags("2026-11-12", "2026-11-13")
    )
    assert first.success
    assert counts(tmp_path) == (2, 1, 0)
    materialized = {
        (e.asset_key.to_user_string(), e.partition)
        for e in first.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "deals"])
    }
    assert materialized == {("raw/deals", "2026-11-12"), ("raw/deals", "2026-11-13")}

    again = dg.materialize(definitions, resources={"warehouse": warehouse}, partition_key="2026-11-12")
    assert again.success
    assert counts(tmp_path) == (2, 1, 0)
    # Integrity kept nothing before the first run, so it ranked every table whole; the rerun reloaded
    # one extract date, and only that date's keys were ranked again.
    assert set(integrity_metadata(first, "extract_dates_ranked_again").values()) == {"all (rebuilt)"}
    reranked = integrity_metadata(again, "extract_dates_ranked_again")
    assert "deals" in reranked and set(reranked.values()) == {1}
    # The first run's rules looked at every record; the rerun's at the records of the keys it re-read.
    assert integrity_metadata(first, "rules_looked_at") == "no findings kept from an earlier run"
    assert integrity_metadata(again, "rules_looked_at") == "changed records only"
    assert set(integrity_metadata(first, "records_looked_at_again").values()) == {"all"}


def integrity_metadata(result: dg.ExecuteInProcessResult, name: str):
    *_, event = (
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["quality", "integrity_issues"])
    )
    return event.materialization.metadata[name].value


def test_a_day_without_an_extract_folder_loads_nothing_and_keeps_what_was_there(tmp_path, landing):
    definitions, warehouse = build(tmp_path, landing)
    dg.materialize(
        definitions, resources={"warehouse": warehouse}, tags=range_tags("2026-11-12", "2026-11-13")
    )

    result = dg.materialize(definitions, resources={"warehouse": warehouse}, partition_key="2026-11-14")

    assert result.success
    assert counts(tmp_path)[0] == 2


def test_a_broken_file_fails_the_run_naming_file_and_column(tmp_path, landing):
    definitions, warehouse = build(tmp_path, landing)
    dg.materialize(
        definitions, resources={"warehouse": warehouse}, tags=range_tags("2026-11-12", "2026-11-13")
    )
    header = [c for c in deal() if c != "status"]
    write_csv(landing / "2026-11-13" / "deals.csv", [deal(deal_id="D9")], header=header)

    result = dg.materialize(
        definitions, resources={"warehouse": warehouse}, partition_key="2026-11-13", raise_on_error=False
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "2026-11-13/deals.csv, column 'status': required column missing" in str(
        failure.step_failure_data.error.to_string()
    )
    assert counts(tmp_path)[0] == 2  # the deals loaded before are intact
    # The tables load in one step, in the contract's order: those before deals were loaded and are
    # materialized, the ones after were not loaded.
    contract_order = [dg.AssetKey(["raw", name]) for name in load_contract().tables]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(contract_order[: contract_order.index(dg.AssetKey(["raw", "deals"]))])


def test_a_failing_suite_fails_its_check_and_blocks_what_is_downstream(tmp_path, landing, monkeypatch):
    from orchestration.defs.ingestion import checks

    real_validate = checks.validate_relation

    def validate_with_a_corrupted_row(table_name, relation, **kwargs):
        if table_name == "deals":
            # As if a row had reached raw behind ingestion's back with a status the contract forbids.
            relation = relation.project("* REPLACE ('maybe' AS status)")
        return real_validate(table_name, relation, **kwargs)

    monkeypatch.setattr(checks, "validate_relation", validate_with_a_corrupted_row)
    definitions, warehouse = build(tmp_path, landing)

    result = dg.materialize(
        definitions, resources={"warehouse": warehouse}, partition_key="2026-11-12", raise_on_error=False
    )

    check_key = dg.AssetCheckKey(dg.AssetKey(["raw", "deals"]), "contract_expectations")
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.asset_check_key == check_key)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert set(evaluation.metadata) == {"rows_checked", "expectations", "failed"}
    failed = {
        (f["columns"], f["unexpected_count"], tuple(f["examples"]))
        for f in evaluation.metadata["failed"].data
    }
    assert ("status", 1, ("maybe",)) in failed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["quality", "integrity_issues"]) not in materialized
    assert counts(tmp_path)[2] >= 1  # the failure is in quality.check_results for BI
