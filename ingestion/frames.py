"""Reading warehouse relations into Polars and writing Polars results back as documented tables.

Results are written through Arrow (never as SQL text) and replaced in one transaction, so a reader sees
the old table or the new one. Table and column descriptions become database comments that BI tools
show next to the data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import duckdb
import polars as pl

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _relation(schema: str, name: str) -> str:
    for part in (schema, name):
        if not _IDENTIFIER.match(part):
            raise ValueError(f"not a plain identifier: {part!r}")
    return f"{schema}.{name}"


def read_frame(conn: duckdb.DuckDBPyConnection, schema: str, name: str) -> pl.DataFrame:
    return conn.sql(f"SELECT * FROM {_relation(schema, name)}").pl()


def replace_table(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    frame: pl.DataFrame,
    description: str,
    column_descriptions: Mapping[str, str],
) -> int:
    """Replace schema.name with `frame`; every column must be described (BI users see the comments)."""
    undocumented = [c for c in frame.columns if c not in column_descriptions]
    if undocumented:
        raise ValueError(f"{schema}.{name}: columns without a description: {', '.join(undocumented)}")
    relation = _relation(schema, name)
    arrow_frame = frame.to_arrow()  # noqa: F841 - read by DuckDB's replacement scan below
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {relation} AS SELECT * FROM arrow_frame")
        conn.execute(f"COMMENT ON TABLE {relation} IS {_literal(description)}")
        for column in frame.columns:
            conn.execute(
                f'COMMENT ON COLUMN {relation}."{column}" IS {_literal(column_descriptions[column])}'
            )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    return frame.height


def _literal(text: str) -> str:
    # COMMENT ON takes no parameters; descriptions come from code, never from extracts.
    return "'" + text.replace("'", "''") + "'"
