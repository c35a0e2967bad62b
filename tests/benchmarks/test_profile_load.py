from datetime import date

from benchmarks.profile_load import profile
from tests.ingestion.conftest import deal, write_csv

DAY = date(2026, 11, 12)


def test_a_file_is_loaded_and_validated_in_a_scratch_warehouse_that_is_removed(tmp_path):
    landing = tmp_path / "land"
    write_csv(
        landing / DAY.isoformat() / "deals.csv", [deal(deal_id="D1"), deal(deal_id="D1"), deal(deal_id="D2")]
    )

    result, statements = profile(landing, "deals", DAY, tmp_path / "work", "1GB", threads=1, validate=True)

    assert (result["rows_read"], result["rows_loaded"], result["quarantined"]) == (3, 2, {"duplicate_row": 1})
    assert result["suite_passed"] is True
    assert result["load_seconds"] > 0 and result["validate_seconds"] > 0
    assert any(statement.startswith("INSERT INTO raw.deals") for _, statement in statements)
    assert not list((tmp_path / "work").iterdir())
