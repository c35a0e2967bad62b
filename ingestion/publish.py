"""Write, audit, publish: copy the BI-facing schemas of the working warehouse into a separate DuckDB file
that BI tools open read-only, replaced atomically.

The pipeline only ever writes a new file beside the published one and renames it over it, so a reader
sees the old version or the new one, never a half-built one, and a reader holding the old file open
never blocks the pipeline. The file is written in DuckDB's v1.0 storage format, which every DuckDB 1.x
clients (many BI drivers embed one) can open. `quality.publication_log` in the published file says
which run each version came from, and why an attempt was blocked when it was.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

PUBLISHED_SCHEMAS = ("marts", "quality")
# The oldest storage format: every DuckDB 1.x client (BI drivers embed old ones) can read it; a file
# written in 2.0's default format cannot be opened by any 1.x client.
STORAGE_VERSION = "v1.0.0"

PUBLICATION_LOG_DDL = """
CREATE TABLE IF NOT EXISTS {schema}publication_log (
    version BIGINT NOT NULL,
    attempted_at TIMESTAMP NOT NULL,
    run_id VARCHAR NOT NULL,
    as_of_date DATE,
    status VARCHAR NOT NULL,
    reason VARCHAR,
    data_version BIGINT
)
"""


@dataclass(frozen=True)
class Publication:
    path: Path
    version: int
    status: str  # published | blocked
    tables: int
    rows: int


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _last_versions(conn: duckdb.DuckDBPyConnection, log: str) -> tuple[int, int | None]:
    """(last attempt's version, version of the data last published) from a publication log."""
    rows = conn.execute(
        f"SELECT coalesce(max(version), 0), max(version) FILTER (WHERE status = 'published') FROM {log}"
    ).fetchall()
    return rows[0][0], rows[0][1]


def _new_file(published_path: Path) -> Path:
    published_path.parent.mkdir(parents=True, exist_ok=True)
    staging = published_path.with_name(f".{published_path.name}.next")
    for leftover in (staging, staging.with_name(staging.name + ".wal")):
        leftover.unlink(missing_ok=True)  # from a run killed mid-publication
    return staging


def _swap_in(staging: Path, published_path: Path) -> None:
    with staging.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, published_path)  # atomic on POSIX: readers see old or new, never half
    directory = os.open(published_path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def publish(
    conn: duckdb.DuckDBPyConnection,
    published_path: Path,
    run_id: str,
    as_of_date: date,
    attempted_at: datetime,
) -> Publication:
    """Copy every table and view of the published schemas from the working warehouse (`conn`) into a
    new file and swap it in; a view (dim_deals: stored deals plus the columns that move with the as-of
    date) is written as a table, so BI tools read it as they read the others. The working warehouse's
    `quality.publication_log` records the attempt."""
    conn.execute(PUBLICATION_LOG_DDL.format(schema="quality."))
    version = _last_versions(conn, "quality.publication_log")[0] + 1
    conn.execute(
        "INSERT INTO quality.publication_log VALUES (?, ?, ?, ?, 'published', NULL, ?)",
        [version, attempted_at, run_id, as_of_date, version],
    )
    staging = _new_file(published_path)
    tables = conn.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name IN $schemas "
        "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name IN $schemas AND NOT internal "
        "ORDER BY ALL",
        {"schemas": list(PUBLISHED_SCHEMAS)},
    ).fetchall()
    columns = conn.execute(
        "SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name IN ? AND comment IS NOT NULL",
        [list(PUBLISHED_SCHEMAS)],
    ).fetchall()
    rows = 0
    conn.execute(f"ATTACH ? AS published_next (STORAGE_VERSION '{STORAGE_VERSION}')", [str(staging)])
    try:
        _copy_tables(conn, tables, columns)
        rows = sum(
            conn.execute(f'SELECT count(*) FROM published_next.{schema}."{table}"').fetchall()[0][0]
            for schema, table, _ in tables
        )
        conn.execute("CHECKPOINT published_next")
        conn.execute("DETACH published_next")
        _swap_in(staging, published_path)
    except BaseException:
        # The attempt did not publish: take its log row back, leave the published file as it was.
        conn.execute("DETACH DATABASE IF EXISTS published_next")
        conn.execute("DELETE FROM quality.publication_log WHERE version = ?", [version])
        staging.unlink(missing_ok=True)
        raise
    return Publication(published_path, version, "published", len(tables), rows)


def _copy_tables(conn: duckdb.DuckDBPyConnection, tables: list[tuple], columns: list[tuple]) -> None:
    for schema in PUBLISHED_SCHEMAS:
        conn.execute(f"CREATE SCHEMA published_next.{schema}")
    for schema, table, comment in tables:
        conn.execute(f'CREATE TABLE published_next.{schema}."{table}" AS SELECT * FROM {schema}."{table}"')
        if comment:
            conn.execute(f'COMMENT ON TABLE published_next.{schema}."{table}" IS {_literal(comment)}')
    for schema, table, column, comment in columns:
        conn.execute(f'COMMENT ON COLUMN published_next.{schema}."{table}"."{column}" IS {_literal(comment)}')


def export_parquet(conn: duckdb.DuckDBPyConnection, publication: Publication, parquet_dir: Path) -> Path:
    """Parquet files of the published tables, for tools that prefer files: `<parquet_dir>/current` is a
    symlink swapped atomically to the folder of the newest version; the previous version is kept for
    readers still holding it, older ones are removed."""
    version_dir = parquet_dir / f"v{publication.version:06d}"
    shutil.rmtree(version_dir, ignore_errors=True)  # from a run killed mid-export
    conn.execute("ATTACH ? AS published_now (READ_ONLY)", [str(publication.path)])
    try:
        tables = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'published_now'"
        ).fetchall()
        for schema, table in tables:
            (version_dir / schema).mkdir(parents=True, exist_ok=True)
            target = version_dir / schema / f"{table}.parquet"
            source = f'published_now.{schema}."{table}"'
            conn.execute(f"COPY (SELECT * FROM {source}) TO {_literal(str(target))} (FORMAT parquet)")
    finally:
        conn.execute("DETACH published_now")
    link = parquet_dir / "current"
    next_link = parquet_dir / ".current.next"
    next_link.unlink(missing_ok=True)
    next_link.symlink_to(version_dir.name)
    os.replace(next_link, link)
    versions = sorted(p for p in parquet_dir.glob("v[0-9]*") if p.is_dir())
    for old in versions[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return link


def record_blocked(
    working_conn: duckdb.DuckDBPyConnection,
    published_path: Path,
    run_id: str,
    as_of_date: date | None,
    reason: str,
    attempted_at: datetime,
) -> Publication:
    """A run whose blocking checks failed: keep the published data, and say why in its publication log
    (in the working warehouse and in a new copy of the published file, swapped in like a publication)."""
    working_conn.execute(PUBLICATION_LOG_DDL.format(schema="quality."))
    version = _last_versions(working_conn, "quality.publication_log")[0] + 1
    data_version = None
    if published_path.exists():
        staging = _new_file(published_path)
        shutil.copyfile(published_path, staging)
        with duckdb.connect(str(staging)) as copy:
            copy.execute(PUBLICATION_LOG_DDL.format(schema="quality."))
            data_version = _last_versions(copy, "quality.publication_log")[1]
            copy.execute(
                "INSERT INTO quality.publication_log VALUES (?, ?, ?, ?, 'blocked', ?, ?)",
                [version, attempted_at, run_id, as_of_date, reason, data_version],
            )
            copy.execute("CHECKPOINT")
        _swap_in(staging, published_path)
    working_conn.execute(
        "INSERT INTO quality.publication_log VALUES (?, ?, ?, ?, 'blocked', ?, ?)",
        [version, attempted_at, run_id, as_of_date, reason, data_version],
    )
    return Publication(published_path, version, "blocked", 0, 0)
