"""Time loading one extract file into a fresh warehouse, statement by statement, and its GX suite.

    python -m benchmarks.profile_load --landing benchmarks/cache/sf100/extracts --table activities \
        --work-dir <scratch folder> [--day 2026-11-25] [--validate] [--statements]

Loads `<landing>/<day>/<table>.(csv|parquet)` as the raw_extracts step does (`ingestion.load`), into a
new warehouse under `--work-dir` (removed at the end, with its spill folder: at SF100 the activities
file spilled 16 GB when sampled), with the pipeline's DuckDB limits. `--validate` then runs the table's
suite on the loaded rows as the contract check does (`expectations.runner.validate_relation`). Prints one JSON
line: rows read, loaded and quarantined (by rule), seconds of the load and of the validation, the
validation's verdict, and the process's peak RSS; `--statements` also prints each statement of the load
that took over `--over` seconds (stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb


class _TimedConnection:
    """A DuckDB connection that records how long each `execute` took (the loader calls only that)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self._conn = conn
        self.statements: list[tuple[float, str]] = []

    def execute(self, query: str, *args: Any) -> duckdb.DuckDBPyConnection:
        start = time.perf_counter()
        result = self._conn.execute(query, *args)
        self.statements.append((time.perf_counter() - start, " ".join(query.split())))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def profile(
    landing: Path,
    table_name: str,
    day: date,
    work_dir: Path,
    memory_limit: str = "2GB",
    threads: int = 2,
    validate: bool = False,
) -> tuple[dict, list[tuple[float, str]]]:
    from data.contract import load_contract
    from ingestion.load import load_extract_table
    from ingestion.warehouse import DuckDBSettings, connect, ensure_schemas

    contract = load_contract()
    folder = work_dir / f"profile_load_{table_name}"
    shutil.rmtree(folder, ignore_errors=True)
    settings = DuckDBSettings(folder / "warehouse.duckdb", memory_limit, threads, folder / "tmp")
    try:
        with connect(settings) as conn:
            ensure_schemas(conn, contract)
            timed = _TimedConnection(conn)
            start = time.perf_counter()
            load = load_extract_table(
                timed, contract.table(table_name), landing, day, datetime.now(UTC).replace(tzinfo=None)
            )
            result: dict[str, Any] = {
                "table": table_name,
                "day": day.isoformat(),
                "rows_read": load.rows_read,
                "rows_loaded": load.rows_loaded,
                "quarantined": load.quarantined,
                "load_seconds": round(time.perf_counter() - start, 2),
            }
            if validate:
                from expectations.runner import validate_relation

                relation = conn.sql(f"SELECT * FROM raw.{table_name} WHERE _extract_date = ?", params=[day])
                start = time.perf_counter()
                suite = validate_relation(table_name, relation)
                result["validate_seconds"] = round(time.perf_counter() - start, 2)
                result["suite_passed"] = suite.success
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result, timed.statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--landing", type=Path, required=True, help="the folder of YYYY-MM-DD extract folders"
    )
    parser.add_argument("--table", required=True, help="a table of the extract contract, e.g. activities")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 25))
    parser.add_argument("--work-dir", type=Path, required=True, help="scratch folder (needs room to spill)")
    parser.add_argument(
        "--memory-limit",
        default=os.environ.get("FUNNEL_DUCKDB_MEMORY_LIMIT", "2GB"),
        help="DuckDB's memory limit (default: the pipeline's)",
    )
    parser.add_argument(
        "--validate", action="store_true", help="also run the table's Great Expectations suite"
    )
    parser.add_argument("--statements", action="store_true", help="print the load's slow statements (stderr)")
    parser.add_argument("--over", type=float, default=0.3, help="with --statements: seconds to be printed")
    args = parser.parse_args()
    result, statements = profile(
        args.landing, args.table, args.day, args.work_dir, args.memory_limit, validate=args.validate
    )
    if args.statements:
        for seconds, statement in statements:
            if seconds >= args.over:
                print(f"  {seconds:7.2f} s  {statement[:120]}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
