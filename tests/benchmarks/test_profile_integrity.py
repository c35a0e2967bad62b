from datetime import date

from benchmarks.profile_integrity import profile
from data.contract import load_contract
from ingestion.integrity import refresh_integrity_issues
from ingestion.warehouse import DuckDBSettings, connect, ensure_schemas
from tests.ingestion.conftest import LOADED_AT
from tests.ingestion.test_integrity import client, deal, insert


def test_the_day_is_refreshed_on_top_of_the_day_before_and_the_warehouse_is_left_alone(tmp_path):
    contract = load_contract()
    path = tmp_path / "warehouse.duckdb"
    day1, day2 = date(2026, 11, 12), date(2026, 11, 13)
    with connect(DuckDBSettings(path, memory_limit="1GB", threads=1)) as conn:
        ensure_schemas(conn, contract)
        insert(conn, "clients", [client("C1")], extract_date=day1)
        insert(conn, "deals", [deal("D1"), deal("D2"), deal("D3")], extract_date=day1)
        insert(conn, "deals", [deal("D2", client_id="C9")], extract_date=day2)  # the day breaks one deal
        refresh_integrity_issues(conn, contract, LOADED_AT)
    before = path.read_bytes()

    result = profile(path, day2, tmp_path / "work", "1GB", from_scratch=True)

    assert result["looked_at_everything_because"] is None
    assert result["records_looked_at_per_table"]["deals"] == 1
    assert result["findings"] == 1
    assert result["from_scratch_finds_the_same"] is True
    assert path.read_bytes() == before
    assert not list((tmp_path / "work").iterdir())
