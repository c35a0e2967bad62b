"""Time one day's integrity refresh on a built warehouse, as the daily run does it.

    python -m benchmarks.profile_integrity --warehouse <built.duckdb> --day 2026-11-26 [--from-scratch]

Works on a copy of the warehouse (`--work-dir`, default beside it; removed at the end): the day's raw
rows and quarantined rows are taken out and integrity refreshed (the state of the day before), then
they are put back and the refresh timed. Prints one JSON line: seconds, why every record was looked at
(null when only what the day changed was), records looked at per table, findings. `--from-scratch`
also times a refresh with the kept state dropped (every record) and checks it finds the same.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from data.contract import Contract, load_contract
from ingestion.integrity import IntegrityRefresh, refresh_integrity_issues

FINDINGS = "SELECT table_name, record_key, rule, action, reason FROM quality.integrity_issues"


def _timed_refresh(conn: duckdb.DuckDBPyConnection, contract: Contract) -> tuple[float, IntegrityRefresh]:
    start = time.perf_counter()
    refresh = refresh_integrity_issues(conn, contract, datetime.now(UTC).replace(tzinfo=None))
    return time.perf_counter() - start, refresh


def profile(warehouse: Path, day: date, work_dir: Path, memory_limit: str, from_scratch: bool) -> dict:
    contract = load_contract()
    work_dir.mkdir(parents=True, exist_ok=True)
    copy = work_dir / f"profile_integrity_{warehouse.name}"
    shutil.copyfile(warehouse, copy)
    try:
        with duckdb.connect(str(copy)) as conn:
            conn.execute(f"SET memory_limit = '{memory_limit}'")
            conn.execute("CREATE SCHEMA held")
            for table in contract.tables:
                conn.execute(f"CREATE TABLE held.{table} AS FROM raw.{table} WHERE _extract_date = ?", [day])
                conn.execute(f"DELETE FROM raw.{table} WHERE _extract_date = ?", [day])
            conn.execute(
                "CREATE TABLE held.quarantine AS FROM quality.quarantine WHERE extract_date = ?", [day]
            )
            conn.execute("DELETE FROM quality.quarantine WHERE extract_date = ?", [day])
            _timed_refresh(conn, contract)  # the day before
            for table in contract.tables:
                conn.execute(f"INSERT INTO raw.{table} FROM held.{table}")
            conn.execute("INSERT INTO quality.quarantine FROM held.quarantine")
            conn.execute("DROP SCHEMA held CASCADE")
            conn.execute("CHECKPOINT")
            seconds, refresh = _timed_refresh(conn, contract)
            result = {
                "day": day.isoformat(),
                "seconds": round(seconds, 2),
                "looked_at_everything_because": refresh.full_reason,
                "records_looked_at_per_table": refresh.records_checked,
                "findings": sum(refresh.counts.values()),
            }
            if from_scratch:
                kept = set(conn.execute(FINDINGS).fetchall())
                conn.execute("DROP SCHEMA integrity_state CASCADE")
                seconds, _ = _timed_refresh(conn, contract)
                result["from_scratch_seconds"] = round(seconds, 2)
                result["from_scratch_finds_the_same"] = set(conn.execute(FINDINGS).fetchall()) == kept
    finally:
        copy.unlink(missing_ok=True)
        copy.with_name(copy.name + ".wal").unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 26))
    parser.add_argument("--work-dir", type=Path, help="where the copy goes (default: beside the warehouse)")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--from-scratch", action="store_true", help="also time a refresh of every record")
    args = parser.parse_args()
    work_dir = args.work_dir or args.warehouse.parent
    print(json.dumps(profile(args.warehouse, args.day, work_dir, args.memory_limit, args.from_scratch)))


if __name__ == "__main__":
    main()
