"""Opening the warehouse DuckDB file with explicit limits, and the schemas ingestion owns."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from data.contract import Contract, Table

LINEAGE_COLUMNS = {
    "_extract_date": "DATE",
    "_source_file": "VARCHAR",
    "_source_row": "BIGINT",
    "_loaded_at": "TIMESTAMP",
}

QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quality.quarantine (
    table_name VARCHAR NOT NULL,
    extract_date DATE NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT,
    rule VARCHAR NOT NULL,
    column_name VARCHAR,
    reason VARCHAR NOT NULL,
    violations VARCHAR,
    original_values VARCHAR,
    loaded_at TIMESTAMP NOT NULL
)
"""

INTEGRITY_DDL = """
CREATE TABLE IF NOT EXISTS quality.integrity_issues (
    table_name VARCHAR NOT NULL,
    record_key VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    detected_at TIMESTAMP NOT NULL
)
"""

CHECK_RESULTS_DDL = """
CREATE TABLE IF NOT EXISTS quality.check_results (
    run_id VARCHAR NOT NULL,
    checked_at TIMESTAMP NOT NULL,
    table_name VARCHAR NOT NULL,
    partition_keys VARCHAR,
    n_rows BIGINT,
    expectation VARCHAR NOT NULL,
    columns VARCHAR,
    severity VARCHAR NOT NULL,
    rule VARCHAR,
    success BOOLEAN NOT NULL,
    unexpected_count BIGINT,
    unexpected_percent DOUBLE,
    examples_json VARCHAR,
    observed_json VARCHAR
)
"""


@dataclass(frozen=True)
class DuckDBSettings:
    """Explicit engine limits: one writer, bounded memory, spilling to a known place, UTC sessions."""

    path: Path
    memory_limit: str = "4GB"
    threads: int = 2
    temp_directory: Path | None = None

    def resolved_temp_directory(self) -> Path:
        return self.temp_directory or self.path.parent / "tmp"


@contextmanager
def connect(settings: DuckDBSettings, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    temp_directory = settings.resolved_temp_directory()
    temp_directory.mkdir(parents=True, exist_ok=True)
    config = {
        "memory_limit": settings.memory_limit,
        "threads": settings.threads,
        "temp_directory": str(temp_directory),
    }
    conn = duckdb.connect(str(settings.path), read_only=read_only, config=config)
    # Set after connecting: the time-zone setting needs ICU, which loads with the first use.
    conn.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar on the output for any query over two seconds: in a step's captured
    # logs that was hundreds of lines of bar per run (143 in one SF100 build). A session setting.
    conn.execute("SET enable_progress_bar = false")
    try:
        yield conn
    finally:
        conn.close()


def repeated_hashes(run: Callable[[str], Any], hashes_sql: str, into: str, slice_rows: int) -> None:
    """Temp table `into` (h UBIGINT): the values of column `h` of the query `hashes_sql` that it gives
    more than once. `run` executes one statement (a connection's `execute`, or a relation's `query`).

    The hashes are written once to a narrow temp table and counted there in slices of the hash space
    (`h % slices`), each aggregate holding about `slice_rows` of them: one aggregate over 100M rows ran
    out of DuckDB's 2GB. Counting slice by slice straight from the wide source read it once per slice, a
    time that grew with the square of its rows (49 reads of the SF100 activities)."""
    run(f"CREATE OR REPLACE TEMP TABLE _hashes_to_count AS {hashes_sql}")
    rows = run("SELECT count(*) FROM _hashes_to_count").fetchall()[0][0]
    slices = max(1, math.ceil(rows / slice_rows))
    run(f"CREATE OR REPLACE TEMP TABLE {into} (h UBIGINT)")
    for part in range(slices):
        run(
            f"INSERT INTO {into} SELECT h FROM _hashes_to_count WHERE h % {slices} = {part} "
            "GROUP BY h HAVING count(*) > 1"
        )
    run("DROP TABLE _hashes_to_count")


def raw_table_ddl(table: Table) -> str:
    columns = [f'"{c.name}" {c.duckdb_type}' for c in table.columns]
    columns += [f"{name} {sql_type}" for name, sql_type in LINEAGE_COLUMNS.items()]
    return f"CREATE TABLE IF NOT EXISTS raw.{table.name} (\n    " + ",\n    ".join(columns) + "\n)"


def ensure_schemas(conn: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Create the raw and quality schemas; add columns a newer contract version introduced."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    conn.execute("CREATE SCHEMA IF NOT EXISTS quality")
    conn.execute(QUARANTINE_DDL)
    conn.execute(INTEGRITY_DDL)
    conn.execute(CHECK_RESULTS_DDL)
    for table in contract.tables.values():
        conn.execute(raw_table_ddl(table))
        existing = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'raw' AND table_name = ?",
                [table.name],
            ).fetchall()
        }
        for column in table.columns:
            if column.name not in existing:
                conn.execute(f'ALTER TABLE raw.{table.name} ADD COLUMN "{column.name}" {column.duckdb_type}')


def record_check_results(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    checked_at: datetime,
    partition_keys: list[str],
    n_rows: int,
    records: list[dict],
) -> None:
    """Append one validation's outcomes to quality.check_results (BI reads the history from there)."""
    if not records:
        return
    frame = pa.Table.from_pylist(records)  # noqa: F841 - read by DuckDB's replacement scan below
    conn.execute(
        """
        INSERT INTO quality.check_results
        SELECT $run_id, $checked_at, table_name, $partition_keys, $n_rows, expectation, columns, severity,
               rule, success, unexpected_count, unexpected_percent, examples_json, observed_json
        FROM frame
        """,
        {
            "run_id": run_id,
            "checked_at": checked_at,
            "partition_keys": ",".join(partition_keys),
            "n_rows": n_rows,
        },
    )
