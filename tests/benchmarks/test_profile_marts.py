import shutil

from benchmarks.profile_marts import profile_one


def test_a_mart_profiled_with_the_shared_facts_reads_them_and_alone_computes_them(sample_warehouse, tmp_path):
    """`--shared-facts` times the mart as the daily job runs it (after shared/deal_facts, in the same
    run); without, the mart computes the facts itself. The line says which, and the facts step apart."""
    copy = tmp_path / "funnel.duckdb"
    shutil.copy(sample_warehouse.warehouse_path, copy)
    first = sample_warehouse.first_extract_date.isoformat()
    partition = "2026-11-26"

    alone = profile_one(copy, "lead_requirements", partition, first, "1GB")
    shared = profile_one(copy, "lead_requirements", partition, first, "1GB", shared_facts=True)

    assert "deal_facts" not in alone
    assert shared["deal_facts"] == "read from shared.deal_facts"
    assert shared["deal_facts_seconds"] > 0
    assert 0 < shared["step_seconds"] <= shared["seconds"]


def test_a_mart_that_reads_no_deal_facts_profiles_with_the_shared_facts_option(sample_warehouse, tmp_path):
    """`--asset all --shared-facts` profiles every mart, and deals_needing_action reads no deal facts."""
    copy = tmp_path / "funnel.duckdb"
    shutil.copy(sample_warehouse.warehouse_path, copy)
    first = sample_warehouse.first_extract_date.isoformat()

    line = profile_one(copy, "deals_needing_action", "2026-11-26", first, "1GB", shared_facts=True)

    assert line["deal_facts"] == "not read by this mart"
    assert line["deal_facts_seconds"] > 0
