"""Run the floor (benchmarks/floor.sql) on a landing folder into a fresh DuckDB file, timed per statement.

    python -m benchmarks.floor --landing DIR --db floor.duckdb --out floor.json [--format parquet]

Same engine settings as the pipeline (memory limit, threads, spill folder, UTC). The JSON holds the total
and per-statement seconds and, counted after the timing, each mart's rows and a checksum per numeric
column (sums) so the harness can compare the floor's marts with the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import duckdb

FLOOR_SQL = Path(__file__).with_name("floor.sql")
MARTS = ("dim_clients", "dim_deals", "fct_stage_transitions", "fct_client_turnover", "fct_pipeline_daily")
# Compared with the pipeline's marts: a column per mart, summed (counts and amounts the marts agree on).
CHECKSUMS = {
    "dim_deals": ["amount_reporting", "stage_change_count", "skip_count", "reopen_count", "age_days"],
    "fct_stage_transitions": ["to_stage_order", "transition_number", "from_stage_days"],
    "fct_client_turnover": [
        "net_revenue_reporting",
        "margin_reporting",
        "invoice_count",
        "credit_note_count",
    ],
    "fct_pipeline_daily": ["open_deal_count", "open_amount_reporting"],
    "dim_clients": ["employees"],
}
_PARQUET_READER = re.compile(
    r"read_parquet\(getvariable\('landing'\) \|\| '/\*/(\w+)\.parquet', filename = true, "
    r"file_row_number = true, union_by_name = true\)"
)


def statements(sql: str, file_format: str = "parquet") -> list[str]:
    """The script's statements, comments dropped; for CSV extracts the readers are swapped.

    CSV has no file row number: ties between copies of a key with the same version in one file (exact
    duplicates, which quarantine drops anyway) are then broken arbitrarily."""
    if file_format == "csv":
        sql = _PARQUET_READER.sub(
            r"read_csv(getvariable('landing') || '/*/\1.csv', filename = true, union_by_name = true, "
            r"header = true, all_varchar = true)",
            sql,
        ).replace("file_row_number + 1 as _source_row", "0 as _source_row")
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE) if s.strip()]


def _label(statement: str) -> str:
    match = re.match(r"(?:create or replace (?:temp )?(?:table|view)|set variable)\s+([\w.]+)", statement)
    return match.group(1) if match else statement.split()[0]


def run_floor(
    landing: Path,
    db: Path,
    memory_limit: str,
    threads: int,
    file_format: str = "parquet",
    reporting_currency: str = "EUR",
) -> dict:
    db.parent.mkdir(parents=True, exist_ok=True)
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    config = {"memory_limit": memory_limit, "threads": threads, "temp_directory": str(db.parent / "tmp")}
    timings: dict[str, float] = {}
    with duckdb.connect(str(db), config=config) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET VARIABLE landing = ?", [str(landing)])
        conn.execute("SET VARIABLE reporting_currency = ?", [reporting_currency])
        started = time.perf_counter()
        for statement in statements(FLOOR_SQL.read_text(encoding="utf-8"), file_format):
            label, t0 = _label(statement), time.perf_counter()
            try:
                conn.execute(statement).fetchall()
            except duckdb.Error as error:
                raise RuntimeError(f"floor statement {label} failed: {error}") from error
            timings[label] = timings.get(label, 0.0) + time.perf_counter() - t0
            print(f"{label}: {timings[label]:.1f} s", file=sys.stderr, flush=True)
        conn.execute("CHECKPOINT")
        seconds = time.perf_counter() - started
        rows = {m: conn.sql(f"select count(*) from marts.{m}").fetchall()[0][0] for m in MARTS}
        sums = mart_checksums(conn)
    return {"seconds": seconds, "statements": timings, "rows": rows, "checksums": sums}


def mart_checksums(conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, float | None]]:
    """Sum of each CHECKSUMS column of each mart (as double: the marts' decimals and integers alike).
    A mart that is not there (a build that failed before it) is left out, and so reported as differing."""
    present = {
        name
        for (name,) in conn.sql(
            "select table_name from information_schema.tables where table_schema = 'marts'"  # views too
        ).fetchall()
    }
    sums: dict[str, dict[str, float | None]] = {}
    for mart, columns in CHECKSUMS.items():
        if mart not in present:
            continue
        terms = ", ".join(f"sum(cast({c} as double))" for c in columns)
        values = conn.sql(f"select {terms} from marts.{mart}").fetchall()[0]
        sums[mart] = dict(zip(columns, values, strict=True))
    return sums


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True, help="folder of YYYY-MM-DD extract folders")
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file to create (replaced)")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = run_floor(args.landing.resolve(), args.db, args.memory_limit, args.threads, args.format)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
