import polars as pl
import pytest

from ingestion.frames import read_frame, replace_table


def test_a_frame_round_trips_with_its_comments(conn):
    frame = pl.DataFrame({"segment": ["smb", "enterprise"], "win_rate": [0.25, 0.4]})
    replace_table(
        conn,
        "marts",
        "win_rates",
        frame,
        "One row per segment.",
        {"segment": "Client segment.", "win_rate": "Won / (won + lost), it's a share."},
    )

    assert read_frame(conn, "marts", "win_rates").equals(frame)
    comments = conn.execute(
        "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'win_rates' ORDER BY 1"
    ).fetchall()
    assert comments == [("segment", "Client segment."), ("win_rate", "Won / (won + lost), it's a share.")]


def test_reading_only_some_columns_and_never_an_expression(conn):
    frame = pl.DataFrame({"segment": ["smb"], "win_rate": [0.25], "deals": [4]})
    replace_table(conn, "marts", "rates", frame, "One row.", {c: c for c in frame.columns})

    assert read_frame(conn, "marts", "rates", ("deals", "segment")).columns == ["deals", "segment"]
    with pytest.raises(ValueError, match="not a plain identifier"):
        read_frame(conn, "marts", "rates", ("segment; drop table marts.rates",))


def test_reading_in_an_order_and_never_by_an_expression(conn):
    frame = pl.DataFrame({"deal": ["b", "a", "b", "a"], "day": [2, 9, 1, 3], "n": [1, 2, 3, 4]})
    replace_table(conn, "marts", "spells", frame, "Rows.", {c: c for c in frame.columns})

    read = read_frame(conn, "marts", "spells", ("deal", "day", "n"), order_by=("deal", "day"))
    assert read["n"].to_list() == [4, 2, 3, 1]
    with pytest.raises(ValueError, match="not a plain identifier"):
        read_frame(conn, "marts", "spells", order_by=("deal desc; drop table marts.spells",))


def test_an_undocumented_column_is_refused_and_the_old_table_stays(conn):
    replace_table(conn, "marts", "t", pl.DataFrame({"a": [1]}), "t", {"a": "A."})
    with pytest.raises(ValueError, match="columns without a description: b"):
        replace_table(conn, "marts", "t", pl.DataFrame({"a": [2], "b": [3]}), "t", {"a": "A."})
    assert read_frame(conn, "marts", "t")["a"].to_list() == [1]


def test_replace_rows_keeps_the_other_runs_history(conn):
    from datetime import date

    from ingestion.frames import replace_rows

    docs = {"as_of_date": "Run date.", "expected": "Expected revenue."}
    for day, value in ((date(2026, 11, 25), 10.0), (date(2026, 11, 26), 20.0), (date(2026, 11, 26), 30.0)):
        frame = pl.DataFrame({"as_of_date": [day], "expected": [value]})
        replace_rows(conn, "marts", "history", frame, "as_of_date", day, "One row per run.", docs)

    assert read_frame(conn, "marts", "history").sort("as_of_date")["expected"].to_list() == [10.0, 30.0]
