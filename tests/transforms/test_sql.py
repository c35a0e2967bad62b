"""transforms.sql: the named inputs of the transforms' SQL, bound to relations or to frames."""

import logging

import duckdb
import polars as pl
import pytest

from transforms.sql import frame_tables, tables


def test_frames_and_temporary_tables_are_named_and_cleaned_up():
    conn = duckdb.connect()
    conn.execute("create schema marts; create table marts.deals as select 'd1' as deal_id, 10.0 as amount")
    clients = pl.LazyFrame({"deal_id": ["d1", "d2"], "segment": ["smb", "enterprise"]})
    with tables(conn, {"deals": "marts.deals", "clients": clients}) as t:
        t.materialize("joined", "select * from {deals} join {clients} using (deal_id)")
        t.define("big", "select * from {joined} where amount > {floor}", floor=5)
        assert t.frame("select segment, amount from {big}").rows() == [("smb", 10.0)]
    # Nothing is left on the caller's connection: no temporary table, no registered frame.
    assert conn.sql("select count(*) from duckdb_tables() where temporary").fetchall() == [(0,)]
    assert conn.sql("select count(*) from duckdb_views() where not internal").fetchall() == [(0,)]


def test_a_result_materialized_into_a_warehouse_table_is_kept_and_replaced():
    """What the deal_facts asset does: the shared facts outlive the `Tables` that built them, and the
    next run replaces them rather than adding to them."""
    conn = duckdb.connect()
    conn.execute("create schema shared")
    for amounts in ([10.0, 20.0], [5.0]):
        with tables(conn, {"deals": pl.LazyFrame({"amount": amounts})}) as t:
            t.materialize("total", "select sum(amount) as total from {deals}", into="shared.total")
            assert t.frame("select total from {total}").rows() == [(sum(amounts),)]
        assert conn.sql("select total from shared.total").fetchall() == [(sum(amounts),)]
    with frame_tables({}) as t, pytest.raises(ValueError, match=r"not a schema\.relation"):
        t.materialize("total", "select 1", into="total; drop table x")


def test_only_plain_names_and_relations_are_bound():
    with frame_tables({}) as t:
        with pytest.raises(ValueError, match=r"not a schema\.relation"):
            t.add("deals", "marts.deals; drop table x")
        with pytest.raises(ValueError, match="not a plain name"):
            t.materialize("a b", "select 1")


def test_each_statement_is_logged_with_its_time_at_debug(caplog):
    """What `benchmarks.profile_marts --statements` prints: which statement of a transform took the time."""
    caplog.set_level(logging.DEBUG, logger="transforms.sql")
    with frame_tables({"deals": pl.DataFrame({"deal_id": ["d1", "d2", "d3"]})}) as t:
        t.materialize("kept", "select * from {deals} where deal_id <> 'd2'")
        t.frame("select deal_id from {kept}")
    messages = [r.getMessage() for r in caplog.records if r.name == "transforms.sql"]
    assert [m.split(" s")[0].rsplit(" ", 1)[0] for m in messages] == ["materialize kept", "frame 2 rows"]
    assert messages[1].endswith(": select deal_id from {kept}")
