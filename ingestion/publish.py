"""Write, audit, publish: copy the BI-facing schemas of the working warehouse into a separate DuckDB file
that BI tools open read-only, replaced atomically.

The pipeline only ever writes a new file beside the published one and renames it over it, so a reader
sees the old version or the new one, never a half-built one, and a reader holding the old file open
never blocks the pipeline. The file is written in DuckDB's v1.0 storage format, which every DuckDB 1.x
client (many BI drivers embed one) can open. `quality.publication_log` in the published file says
which run each version came from, and why an attempt was blocked when it was.

A daily run changes a small part of each large mart. So the new file starts as a copy of the published
one, and each table whose columns are unchanged gets only its changed rows: the rows of the copy that
no longer occur in the working table are deleted, the working rows that do not occur in the copy are
inserted (rows compared by a hash of the whole row). A table that changed more than half, changed
its columns, is new, or whose repeated rows changed in number is written whole, and so is the whole
file on the first publication and every REWRITE_EVERY-th version.
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


# A table is written whole, not updated in place, when more than this share of its rows changed.
REWRITE_SHARE = 0.5
# Every this many versions the file is written whole, so the space of deleted rows that DuckDB does
# not reuse stays bounded (12 updates with 1.5 % of the largest mart changing grew the SF10 file 7 %).
REWRITE_EVERY = 30


@dataclass(frozen=True)
class Publication:
    path: Path
    version: int
    status: str  # published | blocked
    tables: int
    rows: int
    written_whole: tuple[str, ...] = ()  # schema.table of the tables written whole
    rows_deleted: int = 0  # from the tables updated in place
    rows_inserted: int = 0

    @property
    def tables_written_whole(self) -> int:
        return len(self.written_whole)


def published_relations(conn: duckdb.DuckDBPyConnection, database: str) -> list[tuple[str, str, str | None]]:
    """(schema, table or view, comment) of every relation of the published schemas in `database`."""
    return conn.execute(
        "SELECT schema_name, table_name, comment FROM duckdb_tables() "
        "WHERE database_name = $database AND schema_name IN $schemas "
        "UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() "
        "WHERE database_name = $database AND schema_name IN $schemas AND NOT internal "
        "ORDER BY ALL",
        {"database": database, "schemas": list(PUBLISHED_SCHEMAS)},
    ).fetchall()


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
    """Bring every table and view of the published schemas of the working warehouse (`conn`) into a new
    file and swap it in; a view (dim_deals: stored deals plus the columns that move with the as-of
    date) is written as a table, so BI tools read it as they read the others. The new file starts from
    the published one when there is one (see the module's docstring). The working warehouse's
    `quality.publication_log` records the attempt."""
    conn.execute(PUBLICATION_LOG_DDL.format(schema="quality."))
    version = _last_versions(conn, "quality.publication_log")[0] + 1
    conn.execute(
        "INSERT INTO quality.publication_log VALUES (?, ?, ?, ?, 'published', NULL, ?)",
        [version, attempted_at, run_id, as_of_date, version],
    )
    staging = _new_file(published_path)
    working = conn.execute("SELECT current_database()").fetchall()[0][0]
    tables = published_relations(conn, working)
    try:
        if version % REWRITE_EVERY == 0 or not _attach_previous(conn, published_path, staging):
            conn.execute(f"ATTACH ? AS published_next (STORAGE_VERSION '{STORAGE_VERSION}')", [str(staging)])
        whole, deleted, inserted = _write_tables(conn, working, tables)
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
    return Publication(published_path, version, "published", len(tables), rows, whole, deleted, inserted)


def _attach_previous(conn: duckdb.DuckDBPyConnection, published_path: Path, staging: Path) -> bool:
    """Attach a copy of the published file as `published_next` when there is one this code can update
    (DuckDB opens it and it is in the storage format we write); else leave nothing behind."""
    if not published_path.exists():
        return False
    shutil.copyfile(published_path, staging)
    try:
        conn.execute("ATTACH ? AS published_next", [str(staging)])
    except duckdb.Error:
        staging.unlink(missing_ok=True)
        return False
    storage = conn.execute(
        "SELECT tags['storage_version'] FROM duckdb_databases() WHERE database_name = 'published_next'"
    ).fetchall()[0][0]
    if storage == f"{STORAGE_VERSION}+":
        return True
    conn.execute("DETACH published_next")
    staging.unlink(missing_ok=True)
    return False


def _signatures(conn: duckdb.DuckDBPyConnection, database: str) -> dict[tuple[str, str], list[tuple]]:
    """(schema, table or view) -> its columns (name, type, comment) in order, in one attached database."""
    signatures: dict[tuple[str, str], list[tuple]] = {}
    for schema, table, column, data_type, comment in conn.execute(
        "SELECT schema_name, table_name, column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name IN ? ORDER BY schema_name, table_name, column_index",
        [database, list(PUBLISHED_SCHEMAS)],
    ).fetchall():
        signatures.setdefault((schema, table), []).append((column, data_type, comment))
    return signatures


def _write_tables(
    conn: duckdb.DuckDBPyConnection, database: str, tables: list[tuple]
) -> tuple[tuple[str, ...], int, int]:
    """Make `published_next` hold exactly the published tables of the working warehouse (`database`,
    whose relations are `tables`), with their comments:
    tables it holds with the same columns are updated in place, the others written whole.
    Returns (the tables written whole, as schema.table; rows deleted; rows inserted)."""
    working = _signatures(conn, database)
    held = _signatures(conn, "published_next")
    held_comments = dict(
        conn.execute(
            "SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
            "WHERE database_name = 'published_next'"
        ).fetchall()
    )
    for schema in PUBLISHED_SCHEMAS:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS published_next.{schema}")
    gone = set(held) - {(schema, table) for schema, table, _ in tables}
    deleted = inserted = 0
    rewrite = []
    for schema, table, _ in tables:
        target, source = f'published_next.{schema}."{table}"', f'{schema}."{table}"'
        same_columns = [c[:2] for c in held.get((schema, table), [])] == [
            c[:2] for c in working[(schema, table)]
        ]
        changed = _replace_changed_rows(conn, target, source) if same_columns else None
        if changed is None:
            rewrite.append((schema, table))
        else:
            deleted, inserted = deleted + changed[0], inserted + changed[1]
    # Drop before writing anew, with a checkpoint between: the dropped tables' blocks are then free
    # for the new ones, instead of the file growing by every table written whole.
    for schema, table in sorted(gone) + rewrite:
        conn.execute(f'DROP TABLE IF EXISTS published_next.{schema}."{table}"')
    if gone or rewrite:
        conn.execute("CHECKPOINT published_next")
    for schema, table in rewrite:
        conn.execute(f'CREATE TABLE published_next.{schema}."{table}" AS SELECT * FROM {schema}."{table}"')
        held_comments.pop(f"{schema}.{table}", None)
        held[(schema, table)] = [
            (column, data_type, None) for column, data_type, _ in working[(schema, table)]
        ]
    for schema, table, comment in tables:
        target = f'published_next.{schema}."{table}"'
        if held_comments.get(f"{schema}.{table}") != comment:
            conn.execute(f"COMMENT ON TABLE {target} IS {_literal(comment) if comment else 'NULL'}")
        for (column, _, comment_now), (_, _, comment_held) in zip(
            working[(schema, table)], held[(schema, table)], strict=True
        ):
            if comment_now != comment_held:
                text = _literal(comment_now) if comment_now else "NULL"
                conn.execute(f'COMMENT ON COLUMN {target}."{column}" IS {text}')
    return tuple(f"{schema}.{table}" for schema, table in rewrite), deleted, inserted


def _replace_changed_rows(
    conn: duckdb.DuckDBPyConnection, target: str, source: str
) -> tuple[int, int] | None:
    """Update `target` to hold the rows of `source` (same columns): delete its rows whose hash does not
    occur in `source`, insert the rows of `source` whose hash does not occur in it. Returns (rows
    deleted, rows inserted), or None, having changed nothing, when more than REWRITE_SHARE of the rows
    changed (writing the table whole is then cheaper) or when the rows both hold are not the same
    multiset (a repeated row's count changed), which the two anti-joins cannot mend.

    Rows are compared by a 64-bit hash of the whole row: two different rows, one going and one coming,
    would have to share a hash for a change to be missed (odds about rows x changed rows / 2^64 per
    table, under 1e-8 at SF10)."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE _held_rows AS SELECT hash(r) AS h, rowid AS row_id FROM {target} r"
    )
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _working_rows AS SELECT hash(r) AS h FROM {source} AS r")
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _going_rows AS "
        "SELECT * FROM temp._held_rows ANTI JOIN temp._working_rows USING (h)"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _coming_rows AS "
        "SELECT h FROM temp._working_rows ANTI JOIN temp._held_rows USING (h)"
    )
    try:
        (held, held_sum), (going, going_sum), (working, working_sum), (coming, coming_sum) = [
            conn.execute(f"SELECT count(*), coalesce(sum(h::HUGEINT), 0) FROM temp.{name}").fetchall()[0]
            for name in ("_held_rows", "_going_rows", "_working_rows", "_coming_rows")
        ]
        kept_same = held - going == working - coming and held_sum - going_sum == working_sum - coming_sum
        if not kept_same or going + coming > REWRITE_SHARE * (held + working):
            return None
        if going:
            conn.execute(f"DELETE FROM {target} WHERE rowid IN (SELECT row_id FROM temp._going_rows)")
        if coming:
            conn.execute(
                f"INSERT INTO {target} SELECT * FROM {source} AS r "
                "WHERE hash(r) IN (SELECT h FROM temp._coming_rows)"
            )
        return going, coming
    finally:
        for name in ("_held_rows", "_working_rows", "_going_rows", "_coming_rows"):
            conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


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
