import duckdb

from benchmarks.profile_publish import profile


def built_warehouse(path, wins: list[int]) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS marts; CREATE SCHEMA IF NOT EXISTS quality")
        conn.execute("CREATE OR REPLACE TABLE marts.wins AS SELECT unnest(?::INTEGER[]) AS won", [wins])
        conn.execute("COMMENT ON TABLE marts.wins IS 'One row per win.'")
        conn.execute("CREATE OR REPLACE VIEW marts.big_wins AS SELECT won FROM marts.wins WHERE won > 50")
        conn.execute("CREATE OR REPLACE TABLE quality.quarantine AS SELECT 'x' AS reason")


def test_publishing_is_timed_whole_then_from_the_previous_file_without_changing_the_warehouse(tmp_path):
    warehouse = tmp_path / "funnel.duckdb"
    built_warehouse(warehouse, list(range(100)))
    before = warehouse.read_bytes()

    results, statements = profile(warehouse, tmp_path / "work", memory_limit="1GB", threads=1)

    whole, again = results
    # wins, big_wins, quarantine and the publication log the first publication creates.
    assert (whole["tables"], whole["tables_written_whole"], whole["rows"]) == (4, 4, 100 + 49 + 1 + 1)
    assert (again["tables_written_whole"], again["rows_deleted"], again["rows_inserted"]) == (0, 0, 1)
    assert any(s.startswith('CREATE TABLE published_next.marts."wins"') for _, s in statements)
    assert warehouse.read_bytes() == before
    assert not list((tmp_path / "work").iterdir())


def test_a_previous_published_file_gives_the_rows_a_day_changed(tmp_path):
    import shutil
    from datetime import date, datetime

    from ingestion.publish import publish

    warehouse, published = tmp_path / "funnel.duckdb", tmp_path / "published.duckdb"
    built_warehouse(warehouse, list(range(100)))
    with duckdb.connect(str(warehouse)) as conn:  # yesterday's run published
        publish(conn, published, "run-1", date(2026, 11, 25), datetime(2026, 11, 26, 6))
    shutil.copyfile(published, tmp_path / "kept.duckdb")
    built_warehouse(warehouse, list(range(2, 103)))  # today: 0 and 1 gone, 100-102 new (all big wins)

    results, _ = profile(warehouse, tmp_path / "work", previous=published, memory_limit="1GB", threads=1)

    assert results[1]["tables_written_whole"] == 0
    # wins: 2 deleted, 3 inserted; big_wins: 3 inserted; the log: the profile's two publications.
    assert (results[1]["rows_deleted"], results[1]["rows_inserted"]) == (2, 3 + 3 + 2)
    assert published.read_bytes() == (tmp_path / "kept.duckdb").read_bytes()  # only copied
