import os
from datetime import date

from ingestion.landing import landed_extracts


def test_a_folder_still_being_written_waits_and_a_corrected_file_changes_the_fingerprint(tmp_path):
    (tmp_path / "2026-11-12").mkdir()
    (tmp_path / "2026-11-12" / "deals.csv").write_text("deal_id\nD1\n")
    os.utime(tmp_path / "2026-11-12" / "deals.csv", (1_000, 1_000))
    (tmp_path / "2026-11-13").mkdir()
    (tmp_path / "2026-11-13" / "deals.csv").write_text("deal_id\nD2\n")
    os.utime(tmp_path / "2026-11-13" / "deals.csv", (1_990, 1_990))
    (tmp_path / "2026-11-14").mkdir()  # empty: nothing landed yet
    (tmp_path / "notes").mkdir()  # not an extract date

    landed = landed_extracts(tmp_path, now_timestamp=2_000, settle_seconds=60)
    assert [x.extract_date for x in landed] == [date(2026, 11, 12)]

    first = landed[0].fingerprint
    (tmp_path / "2026-11-12" / "deals.csv").write_text("deal_id\nD1-corrected\n")
    os.utime(tmp_path / "2026-11-12" / "deals.csv", (1_500, 1_500))
    again = landed_extracts(tmp_path, now_timestamp=2_000, settle_seconds=60)
    assert again[0].fingerprint != first
    assert (
        landed_extracts(tmp_path, now_timestamp=2_000, settle_seconds=60)[0].fingerprint
        == again[0].fingerprint
    )
