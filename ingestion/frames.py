"""Reading warehouse relations into Polars and writing Polars results back as documented tables.

Results are written through Arrow (never as SQL text) and replaced in one transaction, so a reader sees
the old table or the new one. Table and column descriptions become database comments that BI tools
show next to the data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _relation(schema: str, name: str) -> str:
    for part in (schema, name):
        if not _IDENTIFIER.match(part):
            raise ValueError(f"not a plain identifier: {part!r}")
    return f"{schema}.{name}"


def read_frame(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    order_by: Sequence[str] | None = None,
) -> pl.DataFrame:
    """A relation as a frame; `columns`: only those (wide marts at scale are mostly memory); `where`: a
    condition written by the caller (SQL text: never from extract data); `order_by`: columns to sort
    the rows by, in DuckDB (which sorts a large table in less memory than a frame's sort)."""
    selected = ", ".join(_plain(c) for c in columns) if columns else "*"
    condition = f" WHERE {where}" if where else ""
    order = f" ORDER BY {', '.join(_plain(c) for c in order_by)}" if order_by else ""
    return conn.sql(f"SELECT {selected} FROM {_relation(schema, name)}{condition}{order}").pl()


def _plain(column: str) -> str:
    if not _IDENTIFIER.match(column):
        raise ValueError(f"not a plain identifier: {column!r}")
    return column


def _check_documented(relation: str, frame: pl.DataFrame, column_descriptions: Mapping[str, str]) -> None:
    undocumented = [c for c in frame.columns if c not in column_descriptions]
    if undocumented:
        raise ValueError(f"{relation}: columns without a description: {', '.join(undocumented)}")


def _comment(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    description: str,
    column_descriptions: Mapping[str, str],
    columns: list[str],
) -> None:
    conn.execute(f"COMMENT ON TABLE {relation} IS {_literal(description)}")
    for column in columns:
        conn.execute(f'COMMENT ON COLUMN {relation}."{column}" IS {_literal(column_descriptions[column])}')


def _arrow(frame: pl.DataFrame):
    # Arrow's string views are Polars' own layout: no copy of the strings (DuckDB reads them as VARCHAR).
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def replace_table(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    frame: pl.DataFrame,
    description: str,
    column_descriptions: Mapping[str, str],
    order_by: Sequence[str] = (),
) -> int:
    """Replace schema.name with `frame`; every column must be described (BI users see the comments).
    `order_by`: columns to store the rows sorted by (DuckDB sorts, within its memory limit, so a large
    frame need not be sorted in Polars first)."""
    relation = _relation(schema, name)
    _check_documented(relation, frame, column_descriptions)
    # NULLS FIRST: the order Polars' sort gives.
    order = ", ".join(f'"{_plain(c)}" NULLS FIRST' for c in order_by)
    arrow_frame = _arrow(frame)  # noqa: F841 - read by DuckDB's replacement scan below
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(
            f"CREATE OR REPLACE TABLE {relation} AS SELECT * FROM arrow_frame"
            + (f" ORDER BY {order}" if order else "")
        )
        _comment(conn, relation, description, column_descriptions, frame.columns)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return frame.height


def replace_rows(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    frame: pl.DataFrame,
    key_column: str,
    key_value: object,
    description: str,
    column_descriptions: Mapping[str, str],
) -> int:
    """Replace only the rows of schema.name whose `key_column` equals `key_value` (a run date, say),
    keeping every other row: for history tables that must never be truncated."""
    relation = _relation(schema, name)
    _relation(schema, key_column)  # a plain identifier too
    _check_documented(relation, frame, column_descriptions)
    arrow_frame = _arrow(frame)  # noqa: F841 - read by DuckDB's replacement scan below
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {relation} AS SELECT * FROM arrow_frame LIMIT 0")
        conn.execute(f'DELETE FROM {relation} WHERE "{key_column}" = ?', [key_value])
        conn.execute(f"INSERT INTO {relation} BY NAME SELECT * FROM arrow_frame")
        _comment(conn, relation, description, column_descriptions, frame.columns)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return frame.height


def _literal(text: str) -> str:
    # COMMENT ON takes no parameters; descriptions come from code, never from extracts.
    return "'" + text.replace("'", "''") + "'"
