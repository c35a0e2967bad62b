"""replace_table's order_by: DuckDB stores a large frame sorted, so Polars need not sort it first."""

import polars as pl
import pytest

from ingestion.frames import read_frame, replace_table

DOCS = {"owner_id": "Owner.", "week": "Week.", "hours": "Hours."}


def test_rows_are_stored_in_the_requested_order_nulls_first(conn):
    frame = pl.DataFrame(
        {"owner_id": ["b", "a", None, "a"], "week": [1, 2, 1, 1], "hours": [1.0, 2.0, 3.0, 4.0]}
    )
    replace_table(
        conn, "marts", "plan", frame, "One row per owner x week.", DOCS, order_by=["owner_id", "week"]
    )

    stored = read_frame(conn, "marts", "plan")
    assert stored.equals(frame.sort("owner_id", "week"))  # Polars' order: nulls first
    assert stored["hours"].to_list() == [3.0, 4.0, 2.0, 1.0]


def test_an_order_column_must_be_a_plain_identifier(conn):
    frame = pl.DataFrame({"owner_id": ["a"], "week": [1], "hours": [1.0]})
    with pytest.raises(ValueError, match="not a plain identifier"):
        replace_table(conn, "marts", "plan", frame, "t", DOCS, order_by=['week"; drop table x; --'])
