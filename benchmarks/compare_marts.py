"""Are the mart tables of two warehouses the same? For proving a rewrite changed no figure.

    python -m benchmarks.compare_marts --old <old warehouse>.duckdb --new <new warehouse>.duckdb \
        [--table marts.lead_requirements ...] [--tolerance 1e-9]

Per table: the column names and types must match, and the rows as multisets: exactly (EXCEPT ALL both
ways, in DuckDB) and, when floats differ in the last bits, after sorting on every column with floats
compared to a relative tolerance (`abs(a - b) <= tol * max(1, |a|, |b|)`). Prints one line per table and
exits 1 when any differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import polars as pl

DEFAULT_TABLES = [
    "marts.funnel_conversion",
    "marts.funnel_cohorts",
    "marts.lead_requirements",
    "marts.segment_focus",
    "marts.client_segments",
    "marts.segment_scorecard",
    "marts.activity_norms",
    "marts.action_plan",
    "marts.deals_needing_action",
]


def _schema(conn: duckdb.DuckDBPyConnection, alias: str, table: str) -> list[tuple[str, str]]:
    schema, name = table.split(".")
    return conn.sql(
        "select column_name, data_type from duckdb_columns() "
        f"where database_name = '{alias}' and schema_name = '{schema}' and table_name = '{name}' "
        "order by column_index"
    ).fetchall()


def frames_match(old: pl.DataFrame, new: pl.DataFrame, tolerance: float) -> str | None:
    """None when equal as multisets (floats to `tolerance`), else what differs."""
    if old.height != new.height:
        return f"rows {old.height} vs {new.height}"
    floats = [c for c, t in old.schema.items() if t.is_float()]
    exact = [c for c in old.columns if c not in floats]
    # Sort on the exact columns first, then the rounded floats: equal rows line up.
    keys = exact + [pl.col(c).round(6).alias(f"_r_{c}") for c in floats]
    a = old.with_columns(keys[len(exact) :]).sort([*exact, *[f"_r_{c}" for c in floats]], nulls_last=True)
    b = new.with_columns(keys[len(exact) :]).sort([*exact, *[f"_r_{c}" for c in floats]], nulls_last=True)
    problems = []
    for column in exact:
        if not a[column].equals(b[column]):
            problems.append(column)
    for column in floats:
        x, y = a[column], b[column]
        both_null = x.is_null() & y.is_null()
        both_nan = x.is_nan().fill_null(False) & y.is_nan().fill_null(False)
        scale = pl.max_horizontal(pl.lit(1.0), x.abs(), y.abs())
        close = pl.select(((x - y).abs() <= tolerance * scale).fill_null(False) | both_null | both_nan)
        if not close.to_series().all():
            problems.append(column)
    return f"columns differ: {', '.join(problems)}" if problems else None


def compare(old_path: Path, new_path: Path, tables: list[str], tolerance: float) -> bool:
    conn = duckdb.connect()
    conn.execute(f"attach '{old_path}' as old_db (read_only)")
    conn.execute(f"attach '{new_path}' as new_db (read_only)")
    same = True
    for table in tables:
        old_schema, new_schema = _schema(conn, "old_db", table), _schema(conn, "new_db", table)
        if old_schema != new_schema:
            print(f"{table}: schema differs\n  old {old_schema}\n  new {new_schema}")
            same = False
            continue
        only_old = conn.sql(
            f"select count(*) from (select * from old_db.{table} except all select * from new_db.{table})"
        ).fetchall()[0][0]
        only_new = conn.sql(
            f"select count(*) from (select * from new_db.{table} except all select * from old_db.{table})"
        ).fetchall()[0][0]
        rows = conn.sql(f"select count(*) from old_db.{table}").fetchall()[0][0]
        if only_old == only_new == 0:
            print(f"{table}: identical ({rows} rows; EXCEPT ALL both ways: 0)")
            continue
        problem = frames_match(
            conn.sql(f"select * from old_db.{table}").pl(),
            conn.sql(f"select * from new_db.{table}").pl(),
            tolerance,
        )
        if problem is None:
            print(
                f"{table}: equal to {tolerance:g} ({rows} rows; EXCEPT ALL: {only_old} / {only_new} rows "
                "differ in float rounding only)"
            )
        else:
            print(f"{table}: DIFFERS ({rows} rows; EXCEPT ALL {only_old} / {only_new}): {problem}")
            same = False
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--table", action="append", help="schema.table; default every Polars mart")
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    sys.exit(0 if compare(args.old, args.new, args.table or DEFAULT_TABLES, args.tolerance) else 1)


if __name__ == "__main__":
    main()
