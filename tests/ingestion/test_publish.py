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
    publish(conn, target, "run-1", AS_OF, AT)
    record_blocked(conn, target, "run-2", AS_OF, "a check failed", AT)  # the rewritten copy too

    probe = (
        "import sys, duckdb; "
        "c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(duckdb.__version__, c.execute('SELECT sum(won) FROM marts.wins').fetchall()[0][0], "
        "c.execute('SELECT count(*) FROM quality.publication_log').fetchall()[0][0])"
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
    assert out[1:] == ["3", "2"]


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
