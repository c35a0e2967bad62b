from __future__ import annotations

import json
from datetime import date, datetime

import polars as pl
import pytest

from ingestion.load import ExtractFileError, load_extract_table
from tests.ingestion.conftest import LOADED_AT, deal, write_csv

DAY = date(2026, 11, 12)


def quarantine(conn) -> list[tuple]:
    return conn.execute(
        "SELECT source_row, rule, column_name FROM quality.quarantine ORDER BY source_row"
    ).fetchall()


# 2: the hash space in six slices for eleven rows, as a file of tens of millions of rows is at the default.
@pytest.mark.parametrize("slice_rows", [None, 2])
def test_each_row_rule_lands_in_quarantine_with_its_row_and_column(
    tmp_path, conn, contract, monkeypatch, slice_rows
):
    if slice_rows:
        monkeypatch.setattr("ingestion.load.REPEAT_SLICE_ROWS", slice_rows)
    rows = [
        deal(deal_id="D1"),
        deal(deal_id="D2", amount="12,5O0"),
        deal(deal_id="D3", currency=""),
        deal(deal_id="D4", status="won", created_at="2026-02-01T00:00:00Z", closed_at="2026-01-01T00:00:00Z"),
        deal(deal_id="D5", status="won", amount="", closed_at="2026-02-01T00:00:00Z"),
        deal(deal_id="D1"),
        deal(deal_id="D6", source_channel="fax"),
        deal(deal_id="D7", amount="-5"),
        deal(deal_id="D8", amount="100"),
        deal(deal_id="D8", amount="200"),
        deal(deal_id="D9", status="lost", closed_at=""),
    ]
    write_csv(tmp_path / "land" / DAY.isoformat() / "deals.csv", rows)

    load = load_extract_table(conn, contract.table("deals"), tmp_path / "land", DAY, LOADED_AT)

    assert quarantine(conn) == [
        (2, "invalid_value", "amount"),
        (3, "missing_value", "currency"),
        (4, "close_before_create", None),
        (5, "won_without_amount", None),
        (6, "duplicate_row", None),
        (7, "not_allowed_value", "source_channel"),
        (8, "out_of_range", "amount"),
        (9, "conflicting_version", None),
        (11, "closed_without_close_time", None),
    ]
    assert conn.execute("SELECT deal_id, amount FROM raw.deals ORDER BY deal_id").fetchall() == [
        ("D1", 1000),
        ("D8", 200),
    ]
    assert (load.rows_read, load.rows_loaded, load.rows_quarantined) == (11, 2, 9)
    original = json.loads(
        conn.execute(
            "SELECT original_values FROM quality.quarantine WHERE rule = 'invalid_value'"
        ).fetchall()[0][0]
    )
    assert original["amount"] == "12,5O0"


def test_a_line_with_the_wrong_number_of_fields_is_quarantined_as_malformed(tmp_path, conn, contract):
    path = write_csv(
        tmp_path / "land" / DAY.isoformat() / "deals.csv", [deal(deal_id="D1"), deal(deal_id="D3")]
    )
    lines = path.read_text().splitlines()
    lines.insert(2, "D2,C1,software,O1")  # the second data row lost most of its fields
    path.write_text("\n".join(lines) + "\n")

    load_extract_table(conn, contract.table("deals"), tmp_path / "land", DAY, LOADED_AT)

    assert quarantine(conn) == [(2, "malformed_row", None)]
    # Rows after the broken line keep their own row numbers.
    assert conn.execute("SELECT deal_id, _source_row FROM raw.deals ORDER BY 1").fetchall() == [
        ("D1", 1),
        ("D3", 3),
    ]


def test_text_from_an_extract_never_becomes_sql(tmp_path, conn, contract):
    evil = "x'); drop table raw.deals; --"
    write_csv(tmp_path / "land" / DAY.isoformat() / "deals.csv", [deal(client_id=evil, lost_reason='"; --')])

    load_extract_table(conn, contract.table("deals"), tmp_path / "land", DAY, LOADED_AT)

    assert conn.execute("SELECT client_id FROM raw.deals").fetchall() == [(evil,)]


def test_timestamps_with_an_offset_are_stored_in_utc(tmp_path, conn, contract):
    write_csv(
        tmp_path / "land" / DAY.isoformat() / "deals.csv", [deal(created_at="2026-01-02T01:30:00+02:00")]
    )

    load_extract_table(conn, contract.table("deals"), tmp_path / "land", DAY, LOADED_AT)

    assert conn.execute("SELECT created_at FROM raw.deals").fetchall() == [(datetime(2026, 1, 1, 23, 30),)]


def test_reloading_a_partition_replaces_exactly_its_rows(tmp_path, conn, contract):
    land = tmp_path / "land"
    write_csv(land / "2026-11-12" / "deals.csv", [deal(deal_id="D1"), deal(deal_id="D2", currency="")])
    write_csv(
        land / "2026-11-13" / "deals.csv",
        [deal(deal_id="D1", status="lost", closed_at="2026-11-13T09:00:00Z")],
    )
    table = contract.table("deals")
    for day in (date(2026, 11, 12), date(2026, 11, 13), date(2026, 11, 12)):
        load_extract_table(conn, table, land, day, LOADED_AT)

    assert conn.execute("SELECT _extract_date, deal_id, status FROM raw.deals ORDER BY 1").fetchall() == [
        (date(2026, 11, 12), "D1", "open"),
        (date(2026, 11, 13), "D1", "lost"),
    ]
    assert conn.execute("SELECT count(*) FROM quality.quarantine").fetchall() == [(1,)]


def test_a_missing_required_column_fails_naming_file_and_column_and_keeps_loaded_data(
    tmp_path, conn, contract
):
    land = tmp_path / "land"
    table = contract.table("deals")
    write_csv(land / DAY.isoformat() / "deals.csv", [deal()])
    load_extract_table(conn, table, land, DAY, LOADED_AT)

    header = [c for c in deal() if c != "currency"]
    write_csv(land / DAY.isoformat() / "deals.csv", [deal(deal_id="D2")], header=header)
    with pytest.raises(ExtractFileError, match=r"deals\.csv, column 'currency': required column missing"):
        load_extract_table(conn, table, land, DAY, LOADED_AT)

    assert conn.execute("SELECT deal_id FROM raw.deals").fetchall() == [("D1",)]


def test_an_unreadable_file_fails_naming_the_file(tmp_path, conn, contract):
    path = tmp_path / "land" / DAY.isoformat() / "deals.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 this is not parquet")

    with pytest.raises(ExtractFileError, match=r"deals\.parquet: cannot read the Parquet file"):
        load_extract_table(conn, contract.table("deals"), tmp_path / "land", DAY, LOADED_AT)


def test_parquet_extracts_load_like_csv(tmp_path, conn, contract):
    frame = pl.DataFrame(
        {
            "rate_date": [date(2026, 11, 12), date(2026, 11, 12), date(2026, 11, 12)],
            "currency": ["USD", "GBP", "USD"],
            "rate_to_reporting": [0.92, 1.17, 0.0],
        }
    )
    path = tmp_path / "land" / DAY.isoformat() / "fx_rates.parquet"
    path.parent.mkdir(parents=True)
    frame.write_parquet(path)

    load = load_extract_table(conn, contract.table("fx_rates"), tmp_path / "land", DAY, LOADED_AT)

    assert conn.execute("SELECT currency, rate_to_reporting FROM raw.fx_rates ORDER BY 1").fetchall() == [
        ("GBP", 1.17),
        ("USD", 0.92),
    ]
    assert load.quarantined == {"out_of_range": 1}


@pytest.mark.parametrize("slice_rows", [None, 1])
def test_csv_and_parquet_days_load_on_one_connection_with_their_repeats_quarantined(
    tmp_path, conn, contract, monkeypatch, slice_rows
):
    # A Parquet file is read through a view and a CSV through a table of the same name: each load must
    # replace whichever the one before left.
    if slice_rows:
        monkeypatch.setattr("ingestion.load.REPEAT_SLICE_ROWS", slice_rows)
    land = tmp_path / "land"
    rows = [
        deal(deal_id="D1"),
        deal(deal_id="D1"),
        deal(deal_id="D8", amount="100"),
        deal(deal_id="D8", amount="200"),
        deal(deal_id="D9", currency=""),
    ]
    write_csv(land / "2026-11-12" / "deals.csv", rows)
    parquet = land / "2026-11-13" / "deals.parquet"
    parquet.parent.mkdir(parents=True)
    pl.DataFrame(rows).write_parquet(parquet)
    table = contract.table("deals")

    loads = [
        load_extract_table(conn, table, land, day, LOADED_AT)
        for day in (date(2026, 11, 12), date(2026, 11, 13), date(2026, 11, 12))
    ]

    assert conn.execute("SELECT _extract_date, deal_id, amount FROM raw.deals ORDER BY ALL").fetchall() == [
        (date(2026, 11, 12), "D1", 1000),
        (date(2026, 11, 12), "D8", 200),
        (date(2026, 11, 13), "D1", 1000),
        (date(2026, 11, 13), "D8", 200),
    ]
    assert conn.execute(
        "SELECT extract_date, source_row, rule, violations FROM quality.quarantine ORDER BY ALL"
    ).fetchall() == [
        (date(2026, 11, 12), 2, "duplicate_row", "duplicate_row:"),
        (date(2026, 11, 12), 3, "conflicting_version", "conflicting_version:"),
        (date(2026, 11, 12), 5, "missing_value", "missing_value:currency"),
        (date(2026, 11, 13), 2, "duplicate_row", "duplicate_row:"),
        (date(2026, 11, 13), 3, "conflicting_version", "conflicting_version:"),
        (date(2026, 11, 13), 5, "missing_value", "missing_value:currency"),
    ]
    assert [(load.rows_read, load.rows_loaded, load.rows_quarantined) for load in loads] == [(5, 2, 3)] * 3
