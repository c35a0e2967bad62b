import os
import subprocess
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ingestion.frames import replace_table
from ingestion.publish import publish, record_blocked

AS_OF = date(2026, 11, 26)
AT = datetime(2026, 11, 27, 6, 0)
DUCKDB_1X = Path(__file__).resolve().parents[2] / ".venv" / "duckdb1x"


def write_mart(conn, values: list[int]) -> None:
    replace_table(
        conn, "marts", "wins", pl.DataFrame({"won": values}), "One row per win.", {"won": "Won deals."}
    )


def read(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as reader:
        return reader.execute(sql).fetchall()


def test_publish_copies_marts_and_quality_with_their_comments(tmp_path, conn):
    write_mart(conn, [1, 2, 3])
    target = tmp_path / "published" / "funnel.duckdb"

    publication = publish(conn, target, "run-1", AS_OF, AT)

    assert publication.version == 1
    assert read(target, "SELECT sum(won) FROM marts.wins") == [(6,)]
    assert read(target, "SELECT comment FROM duckdb_tables() WHERE table_name = 'wins'") == [
        ("One row per win.",)
    ]
    assert read(target, "SELECT count(*) FROM quality.quarantine") == [(0,)]
    assert read(target, "SELECT version, run_id, status FROM quality.publication_log") == [
        (1, "run-1", "published")
    ]
    assert not any(p.name.startswith(".") for p in target.parent.iterdir())  # no staging file left


def test_a_view_in_the_marts_is_published_as_a_table_with_its_comments(tmp_path, conn):
    """dim_deals is a view in the working warehouse (the stored deals plus the as-of columns): BI tools
    get it as a table, computed at publication, with its comments."""
    write_mart(conn, [1, 2, 3])
    conn.execute("CREATE VIEW marts.wins_doubled AS SELECT won, won * 2 AS doubled FROM marts.wins")
    conn.execute("COMMENT ON VIEW marts.wins_doubled IS 'Wins, doubled.'")
    conn.execute("COMMENT ON COLUMN marts.wins_doubled.doubled IS 'Twice the wins.'")
    target = tmp_path / "funnel.duckdb"

    publication = publish(conn, target, "run-1", AS_OF, AT)

    assert read(target, "SELECT sum(doubled) FROM marts.wins_doubled") == [(12,)]
    assert read(target, "SELECT comment FROM duckdb_tables() WHERE table_name = 'wins_doubled'") == [
        ("Wins, doubled.",)
    ]
    assert read(
        target,
        "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'wins_doubled' ORDER BY 1",
    ) == [("doubled", "Twice the wins."), ("won", None)]
    assert read(target, "SELECT count(*) FROM duckdb_views() WHERE NOT internal") == [(0,)]
    assert publication.tables == read(target, "SELECT count(*) FROM duckdb_tables()")[0][0]


def test_a_reader_keeps_its_version_while_a_new_one_is_swapped_in(tmp_path, conn):
    target = tmp_path / "funnel.duckdb"
    write_mart(conn, [1])
    publish(conn, target, "run-1", AS_OF, AT)
    with duckdb.connect(str(target), read_only=True) as reader:
        write_mart(conn, [1, 1])
        publish(conn, target, "run-2", AS_OF, AT)  # does not wait for, nor disturb, the open reader
        assert reader.execute("SELECT count(*) FROM marts.wins").fetchall() == [(1,)]
    assert read(target, "SELECT count(*) FROM marts.wins") == [(2,)]


def test_a_blocked_attempt_keeps_the_data_and_says_why(tmp_path, conn):
    target = tmp_path / "funnel.duckdb"
    write_mart(conn, [5])
    publish(conn, target, "run-1", AS_OF, AT)
    write_mart(conn, [5, 999])  # the half-checked data of a failing run

    record_blocked(conn, target, "run-2", AS_OF, "raw/deals contract_expectations failed", AT)

    assert read(target, "SELECT sum(won) FROM marts.wins") == [(5,)]
    assert read(
        target, "SELECT version, status, reason, data_version FROM quality.publication_log ORDER BY 1"
    ) == [
        (1, "published", None, 1),
        (2, "blocked", "raw/deals contract_expectations failed", 1),
    ]
    assert conn.execute("SELECT status FROM quality.publication_log ORDER BY version").fetchall() == [
        ("published",),
        ("blocked",),
    ]


def test_a_failed_publication_leaves_the_published_file_and_log_as_they_were(tmp_path, conn, monkeypatch):
    from ingestion import publish as publish_module

    target = tmp_path / "funnel.duckdb"
    write_mart(conn, [5])
    publish(conn, target, "run-1", AS_OF, AT)
    before = target.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(publish_module, "_swap_in", crash)
    with pytest.raises(OSError, match="disk full"):
        publish(conn, target, "run-2", AS_OF, AT)

    assert target.read_bytes() == before
    assert conn.execute("SELECT max(version) FROM quality.publication_log").fetchall() == [(1,)]


def test_a_duckdb_1x_client_opens_the_published_file_read_only(tmp_path, conn):
    assert DUCKDB_1X.is_dir(), "DuckDB 1.x client missing: `make install` puts it in .venv/duckdb1x"
    target = tmp_path / "funnel.duckdb"
    write_mart(conn, [1, 2])
    write_wide_mart(conn, [(n, "a") for n in range(10)])
    publish(conn, target, "run-1", AS_OF, AT)
    write_wide_mart(conn, [(n, "a") for n in range(1, 10)] + [(10, "b")])
    assert publish(conn, target, "run-2", AS_OF, AT).rows_deleted == 1  # updated in place
    record_blocked(conn, target, "run-3", AS_OF, "a check failed", AT)  # the rewritten copy too

    probe = (
        "import sys, duckdb; "
        "c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(duckdb.__version__, c.execute('SELECT sum(won) FROM marts.wins').fetchall()[0][0], "
        "c.execute('SELECT count(*) FROM quality.publication_log').fetchall()[0][0], "
        "c.execute('SELECT sum(deal) FROM marts.moves').fetchall()[0][0])"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [str(DUCKDB_1X / "bin" / "python"), "-c", probe, str(target)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert out[0].startswith("1.")
    assert out[1:] == ["3", "3", "55"]


def test_parquet_export_follows_the_newest_publication(tmp_path, conn):
    from ingestion.publish import export_parquet

    target, parquet = tmp_path / "funnel.duckdb", tmp_path / "parquet"
    for n in (1, 2, 3):
        write_mart(conn, list(range(n)))
        current = export_parquet(conn, publish(conn, target, f"run-{n}", AS_OF, AT), parquet)

    assert current.resolve().name == "v000003"
    assert pl.read_parquet(current / "marts" / "wins.parquet")["won"].to_list() == [0, 1, 2]
    assert (current / "quality" / "publication_log.parquet").exists()
    assert sorted(p.name for p in parquet.glob("v*")) == ["v000002", "v000003"]  # one older kept for readers


def published_equals_working(conn, target: Path) -> None:
    """Every published table holds exactly the working rows (as multisets), with the same comments."""
    conn.execute("ATTACH ? AS check_published (READ_ONLY)", [str(target)])
    try:
        tables = conn.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = 'check_published' "
            "ORDER BY ALL"
        ).fetchall()
        working = conn.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name IN ('marts', 'quality') UNION ALL SELECT schema_name, view_name, comment "
            "FROM duckdb_views() WHERE database_name = current_database() AND schema_name IN ('marts', 'quality') "
            "AND NOT internal ORDER BY ALL"
        ).fetchall()
        assert tables == working
        for schema, table, _ in tables:
            published, here = f'check_published.{schema}."{table}"', f'{schema}."{table}"'
            differences = conn.execute(
                f"SELECT count(*) FROM ((FROM {published} EXCEPT ALL FROM {here}) "
                f"UNION ALL (FROM {here} EXCEPT ALL FROM {published}))"
            ).fetchall()
            assert differences == [(0,)], f"{schema}.{table}"
        columns = (
            "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
            "WHERE database_name = {} AND schema_name IN ('marts', 'quality') ORDER BY ALL"
        )
        assert (
            conn.execute(columns.format("'check_published'")).fetchall()
            == conn.execute(columns.format("current_database()")).fetchall()
        )
    finally:
        conn.execute("DETACH check_published")


def write_wide_mart(conn, rows: list[tuple[int, str]]) -> None:
    frame = pl.DataFrame(rows, schema={"deal": pl.Int64, "stage": pl.String}, orient="row")
    replace_table(conn, "marts", "moves", frame, "One row per move.", {"deal": "Deal.", "stage": "Stage."})


def test_a_later_publication_writes_only_the_changed_rows_and_equals_the_working_marts(tmp_path, conn):
    target = tmp_path / "funnel.duckdb"
    rows = [(n, f"s{n % 7}") for n in range(1, 101)]
    write_wide_mart(conn, rows)
    write_mart(conn, [1, 2, 3])
    conn.execute("CREATE VIEW marts.moves_late AS SELECT deal, stage FROM marts.moves WHERE deal > 90")
    conn.execute("CREATE TABLE marts.gone AS SELECT 1 AS x")
    first = publish(conn, target, "run-1", AS_OF, AT)
    assert first.tables_written_whole == first.tables

    # The next day: rows 10 and 20 gone, row 1 changed, 101 and 102 new; the wins mart changed
    # entirely; a mart added, one dropped; a column's comment changed.
    rows = [r for r in rows if r[0] not in (10, 20)]
    rows[0] = (1, "won")
    rows += [(101, "s1"), (102, "s2")]
    write_wide_mart(conn, rows)
    write_mart(conn, [7, 8, 9])
    replace_table(conn, "marts", "new_mart", pl.DataFrame({"x": [1]}), "New.", {"x": "X."})
    conn.execute("DROP TABLE marts.gone")
    conn.execute("COMMENT ON COLUMN marts.moves.stage IS 'The stage reached.'")

    second = publish(conn, target, "run-2", AS_OF, AT)

    published_equals_working(conn, target)
    # Deleted: 10, 20 and the old row 1 of moves. Inserted: the new row 1, 101 and 102 of moves and
    # of the view over it (101, 102), and the publication log's row. Written whole: wins, new_mart.
    assert (second.rows_deleted, second.rows_inserted) == (3, 3 + 2 + 1)
    assert (second.tables_written_whole, second.written_whole) == (2, ("marts.new_mart", "marts.wins"))
    assert read(target, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'gone'") == [(0,)]
    assert read(target, "SELECT stage FROM marts.moves WHERE deal = 1") == [("won",)]


def test_a_repeated_row_whose_count_changed_rewrites_its_table(tmp_path, conn):
    target = tmp_path / "funnel.duckdb"
    write_wide_mart(conn, [(1, "a"), (1, "a"), (2, "b")] + [(n, "c") for n in range(3, 20)])
    publish(conn, target, "run-1", AS_OF, AT)
    write_wide_mart(conn, [(1, "a"), (2, "b"), (2, "b")] + [(n, "c") for n in range(3, 20)])

    publication = publish(conn, target, "run-2", AS_OF, AT)

    published_equals_working(conn, target)
    assert publication.tables_written_whole == 1  # no row is new or gone, yet the table changed


def test_a_published_file_in_another_storage_format_is_written_whole_in_ours(tmp_path, conn):
    from ingestion.publish import STORAGE_VERSION

    target = tmp_path / "funnel.duckdb"
    with duckdb.connect(str(target)) as other:  # DuckDB 2.0's own format, which 1.x clients cannot read
        other.execute("CREATE SCHEMA marts; CREATE TABLE marts.wins AS SELECT 1 AS won")
    write_mart(conn, [1, 2])

    publication = publish(conn, target, "run-1", AS_OF, AT)

    assert publication.tables_written_whole == publication.tables
    published_equals_working(conn, target)
    conn.execute("ATTACH ? AS probe (READ_ONLY)", [str(target)])
    storage = conn.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'probe'"
    )
    assert storage.fetchall() == [(f"{STORAGE_VERSION}+",)]
    conn.execute("DETACH probe")


def test_every_so_many_versions_the_file_is_written_whole(tmp_path, conn, monkeypatch):
    from ingestion import publish as publish_module

    monkeypatch.setattr(publish_module, "REWRITE_EVERY", 3)
    target = tmp_path / "funnel.duckdb"
    write_mart(conn, [1, 2])
    whole = [publish(conn, target, f"run-{n}", AS_OF, AT).tables_written_whole for n in range(1, 7)]
    tables = publish(conn, target, "run-7", AS_OF, AT).tables
    assert whole == [tables, 0, tables, 0, 0, tables]
