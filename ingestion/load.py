"""Load one extract table of one extract date into `raw`, sending rows that break the contract to quarantine.

The file is read by DuckDB's own readers; values from the extract never become SQL text (the file path is a
parameter or a session variable, CSV columns are addressed by position, and every identifier in the SQL
comes from the contract). Each load replaces exactly the rows of its extract date, in one transaction: a
failure leaves the data loaded before intact.

The time of a load grows with the file's rows, not their square: the wide copy of the rows (`_checked`) is
read a fixed number of times, and only the narrow hashes are read once per slice (`_find_repeats`,
`ingestion.warehouse.repeated_hashes`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from data.contract import Column, Table
from ingestion.warehouse import repeated_hashes

EXTENSIONS = (".csv", ".parquet")

# Rule names written to quality.quarantine, in the order a row's first broken rule is chosen.
REASONS = {
    "malformed_row": "the line could not be parsed",
    "invalid_value": "the value does not parse as the contract's type",
    "missing_value": "a value the contract requires is empty",
    "not_allowed_value": "the value is not one of the contract's allowed values",
    "out_of_range": "the value is outside the contract's range",
    "duplicate_row": "an exact copy of an earlier row of the same file",
    "conflicting_version": "another row of the same file has the same key and version but other values",
}


class ExtractFileError(Exception):
    """A file that cannot be loaded at all: the partition fails and nothing it held is loaded."""

    def __init__(self, path: Path, message: str, column: str | None = None, row: int | None = None):
        self.path, self.column, self.row = path, column, row
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class TableLoad:
    """What one load did: rows read, loaded and quarantined (by rule)."""

    table_name: str
    extract_date: date
    source_file: str | None
    status: str  # loaded | no_file (the folder has no file for this table: its rows are cleared)
    rows_read: int = 0
    rows_loaded: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())


def extract_folder(landing_dir: Path, extract_date: date) -> Path:
    return landing_dir / extract_date.isoformat()


def find_extract_file(folder: Path, table_name: str) -> Path | None:
    found = [folder / f"{table_name}{ext}" for ext in EXTENSIONS if (folder / f"{table_name}{ext}").exists()]
    if len(found) > 1:
        raise ExtractFileError(found[0], f"both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


def _csv_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ExtractFileError(path, f"cannot read the header: {error}") from error
    if not header:
        raise ExtractFileError(path, "the file is empty: a CSV extract needs at least a header row")
    return [name.strip() for name in header]


def _check_columns(path: Path, table: Table, file_columns: list[str]) -> tuple[str, ...]:
    duplicates = {name for name in file_columns if file_columns.count(name) > 1}
    if duplicates:
        raise ExtractFileError(path, "the header repeats a column", column=sorted(duplicates)[0])
    for name in table.required_columns:
        if name not in file_columns:
            raise ExtractFileError(
                path, f"required column missing (contract table {table.name!r})", column=name
            )
    return tuple(name for name in file_columns if name not in table.column_names)


def _typed_expression(column: Column, source: str) -> str:
    if column.type == "string":
        return f"NULLIF(CAST({source} AS VARCHAR), '')"
    if column.type == "timestamp":
        # An offset in the text is honoured; without one the value is UTC (the session time zone).
        return f"CAST(TRY_CAST({source} AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"TRY_CAST({source} AS {column.duckdb_type})"


def _stage_csv(conn: duckdb.DuckDBPyConnection, path: Path, file_columns: list[str]) -> dict[str, str]:
    """Read a CSV into temp table _stage (all text) and its unparseable lines into _rejects."""
    positional = {f"c{i}": "VARCHAR" for i in range(len(file_columns))}
    _drop_stage(conn)
    conn.execute("DROP TABLE IF EXISTS _rejects")
    conn.execute("DROP TABLE IF EXISTS _rejects_scan")
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _read AS SELECT * FROM read_csv(?, header = true, auto_detect = false, "
        "columns = ?, delim = ',', quote = '\"', escape = '\"', store_rejects = true, "
        "rejects_table = '_rejects', rejects_scan = '_rejects_scan')",
        [str(path), positional],
    )
    # Record numbers: DuckDB skips rejected lines, so accepted rows are numbered around them.
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE _stage AS
        WITH rejected AS (SELECT DISTINCT CAST(line AS BIGINT) - 1 AS record FROM _rejects),
        all_records AS (
            SELECT range + 1 AS record
            FROM range((SELECT count(*) FROM _read) + (SELECT count(*) FROM rejected))
        ),
        accepted AS (
            SELECT record, row_number() OVER (ORDER BY record) - 1 AS read_rowid
            FROM all_records ANTI JOIN rejected USING (record)
        )
        SELECT r.*, a.record AS _source_row
        FROM (SELECT rowid AS read_rowid, * FROM _read) AS r
        JOIN accepted AS a USING (read_rowid)
        """
    )
    return {name: f"c{i}" for i, name in enumerate(file_columns)}


def _drop_stage(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop `_stage` of an earlier load on this connection: a table (CSV) or a view (Parquet)."""
    kinds = conn.execute(
        "SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = '_stage' "
        "UNION ALL SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = '_stage'"
    ).fetchall()
    for (kind,) in kinds:
        conn.execute(f"DROP {kind} _stage")


def _stage_parquet(conn: duckdb.DuckDBPyConnection, path: Path, table: Table) -> tuple[dict[str, str], tuple]:
    """_stage: a view of the Parquet file (read once, by the statement that checks its rows: a copy of it
    in a temp table was one more pass over the file's whole width, spilled to disk at scale). The path
    is a session variable, not SQL text."""
    conn.execute("DROP TABLE IF EXISTS _rejects")
    _drop_stage(conn)
    conn.execute("SET VARIABLE _stage_path = ?", [str(path)])
    try:
        conn.execute(
            "CREATE OR REPLACE TEMP VIEW _stage AS SELECT *, file_row_number + 1 AS _source_row "
            "FROM read_parquet(getvariable('_stage_path'), file_row_number = true)"
        )
    except duckdb.Error as error:
        raise ExtractFileError(path, f"cannot read the Parquet file: {error}") from error
    file_columns = [
        row[0]
        for row in conn.execute("SELECT column_name FROM (DESCRIBE _stage)").fetchall()
        if row[0] not in ("file_row_number", "_source_row")
    ]
    ignored = _check_columns(path, table, file_columns)
    # Parquet names are matched to contract names exactly; only contract names are written into SQL.
    return {name: f'"{name}"' for name in table.column_names if name in file_columns}, ignored


def _violation_terms(table: Table, sources: dict[str, str]) -> list[str]:
    """SQL terms, one per rule and column, each yielding 'rule:column' when the row breaks it."""
    terms = []
    for column in table.columns:
        typed, raw = f'"{column.name}"', f'"__raw_{column.name}"'
        if column.name in sources and column.type != "string":
            terms.append(
                f"CASE WHEN {raw} IS NOT NULL AND {typed} IS NULL THEN 'invalid_value:{column.name}' END"
            )
    for column in table.columns:
        if not column.nullable:
            typed, raw = f'"{column.name}"', f'"__raw_{column.name}"'
            terms.append(f"CASE WHEN {raw} IS NULL THEN 'missing_value:{column.name}' END")
    for column in table.columns:
        typed = f'"{column.name}"'
        if column.allowed:
            values = ", ".join(_sql_string(value) for value in column.allowed)
            terms.append(f"CASE WHEN {typed} NOT IN ({values}) THEN 'not_allowed_value:{column.name}' END")
        bounds = []
        if column.min is not None:
            bounds.append(f"{typed} < {column.min!r}")
        if column.max is not None:
            bounds.append(f"{typed} > {column.max!r}")
        if bounds:
            terms.append(f"CASE WHEN {' OR '.join(bounds)} THEN 'out_of_range:{column.name}' END")
    for rule in table.row_rules:
        terms.append(f"CASE WHEN coalesce(({rule.when}), false) THEN '{rule.rule}:' END")
    return terms


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reason_sql(table: Table) -> str:
    """A readable reason per first broken rule; row rules carry their own reason from the contract."""
    reasons = {**REASONS, **{rule.rule: rule.reason for rule in table.row_rules}}
    cases = " ".join(f"WHEN {_sql_string(rule)} THEN {_sql_string(text)}" for rule, text in reasons.items())
    return f"CASE rule {cases} END"


def load_extract_table(
    conn: duckdb.DuckDBPyConnection,
    table: Table,
    landing_dir: Path,
    extract_date: date,
    loaded_at: datetime,
) -> TableLoad:
    """Replace the rows of `extract_date` in raw.<table> with the valid rows of its extract file."""
    folder = extract_folder(landing_dir, extract_date)
    path = find_extract_file(folder, table.name)
    source_file = f"{extract_date.isoformat()}/{path.name}" if path else None

    ignored: tuple[str, ...] = ()
    if path is not None:
        if path.suffix == ".csv":
            file_columns = _csv_header(path)
            ignored = _check_columns(path, table, file_columns)
            try:
                sources = _stage_csv(conn, path, file_columns)
            except duckdb.Error as error:
                raise ExtractFileError(path, f"cannot read the CSV file: {error}") from error
            sources = {name: src for name, src in sources.items() if name in table.column_names}
        else:
            sources, ignored = _stage_parquet(conn, path, table)

        selects = ["_source_row"]
        for column in table.columns:
            if column.name in sources:
                src = sources[column.name]
                raw = f"NULLIF({src}, '')" if _is_text(conn, src) else src
                selects.append(f'{raw} AS "__raw_{column.name}"')
                selects.append(f'{_typed_expression(column, src)} AS "{column.name}"')
            else:
                selects.append(f'NULL AS "__raw_{column.name}"')
                selects.append(f'CAST(NULL AS {column.duckdb_type}) AS "{column.name}"')
        # A view: typed and raw values are computed once, in the same pass that checks the rules.
        conn.execute("CREATE OR REPLACE TEMP VIEW _typed AS SELECT " + ", ".join(selects) + " FROM _stage")

        raw_columns = ", ".join(f'"__raw_{c.name}"' for c in table.columns)
        terms = _violation_terms(table, sources)
        try:  # the pass that reads a Parquet file's rows (its _stage is a view)
            conn.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _checked AS
                SELECT *, list_filter([{", ".join(terms)}], lambda v: v IS NOT NULL) AS violations,
                       hash({raw_columns}) AS _row_hash
                FROM _typed
                """
            )
        except duckdb.Error as error:
            raise ExtractFileError(path, f"cannot read the file: {error}") from error
        # Exact duplicate lines: all raw values equal, the first copy stays. A window over every column
        # of every row is the costly way; rows whose hash is unique cannot be duplicates, so only rows
        # sharing a hash are compared value by value.
        _find_repeats(conn, raw_columns, "true", "_duplicate_rows", row_hash="_row_hash")
        version_key = [*table.primary_key, *([table.version_column] if table.version_column else [])]
        partition = ", ".join(f'"{name}"' for name in version_key)
        # Two valid rows with the same key and version: the last one in the file is kept.
        _find_repeats(
            conn,
            partition,
            f"len(violations) = 0 AND {_NOT_DUPLICATE}",
            "_conflicting_rows",
            newest_first=True,
        )
        # The rows quarantined, each with every rule it breaks: those breaking a rule of their own (a
        # filter first, so the few of them are all the anti join sees) and the repeats, which the two
        # tables above hold whole.
        conn.execute(
            f"""
            CREATE OR REPLACE TEMP VIEW _quarantined AS
            SELECT * FROM _checked WHERE len(violations) > 0 AND {_NOT_DUPLICATE}
            UNION ALL
            SELECT * REPLACE (list_append(violations, 'duplicate_row:') AS violations) FROM _duplicate_rows
            UNION ALL
            SELECT * REPLACE (['conflicting_version:'] AS violations) FROM _conflicting_rows
            """
        )

    column_list = ", ".join(f'"{c.name}"' for c in table.columns)
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(f"DELETE FROM raw.{table.name} WHERE _extract_date = ?", [extract_date])
        conn.execute(
            "DELETE FROM quality.quarantine WHERE table_name = ? AND extract_date = ?",
            [table.name, extract_date],
        )
        if path is not None:
            rows_loaded = conn.execute(
                f"INSERT INTO raw.{table.name} ({column_list}, _extract_date, _source_file, _source_row, "
                f"_loaded_at) SELECT {column_list}, ?, ?, _source_row, ? FROM _checked "
                f"WHERE len(violations) = 0 AND {_NOT_DUPLICATE} "
                "AND _source_row NOT IN (SELECT _source_row FROM _conflicting_rows)",
                [extract_date, source_file, loaded_at],
            ).fetchall()[0][0]
            original = ", ".join(f'"{c.name}" := "__raw_{c.name}"' for c in table.columns)
            conn.execute(
                f"""
                INSERT INTO quality.quarantine
                SELECT ?, ?, ?, _source_row, rule, nullif(column_name, ''), {_reason_sql(table)},
                       array_to_string(violations, ', '), to_json(struct_pack({original}))::VARCHAR, ?
                FROM (
                    SELECT *, split_part(violations[1], ':', 1) AS rule,
                           split_part(violations[1], ':', 2) AS column_name
                    FROM _quarantined
                )
                """,
                [table.name, extract_date, source_file, loaded_at],
            )
            if path.suffix == ".csv":
                conn.execute(
                    """
                    INSERT INTO quality.quarantine
                    SELECT ?, ?, ?, CAST(line AS BIGINT) - 1, 'malformed_row', NULL,
                           'the line could not be parsed: ' || arg_min(error_message, column_idx),
                           string_agg(DISTINCT CAST(error_type AS VARCHAR), ', '),
                           to_json(struct_pack(csv_line := any_value(csv_line)))::VARCHAR, ?
                    FROM _rejects
                    GROUP BY line
                    """,
                    [table.name, extract_date, source_file, loaded_at],
                )
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise

    if path is None:
        return TableLoad(table.name, extract_date, None, "no_file")
    counts = conn.execute(
        "SELECT rule, count(*) FROM quality.quarantine "
        "WHERE table_name = ? AND extract_date = ? GROUP BY rule",
        [table.name, extract_date],
    ).fetchall()
    quarantined = dict(sorted(counts))
    rows_read = conn.execute("SELECT count(*) FROM _checked").fetchall()[0][0] + quarantined.get(
        "malformed_row", 0
    )
    return TableLoad(
        table.name, extract_date, source_file, "loaded", rows_read, rows_loaded, quarantined, ignored
    )


REPEAT_SLICE_ROWS = 5_000_000

_NOT_DUPLICATE = "_source_row NOT IN (SELECT _source_row FROM _duplicate_rows)"


def _find_repeats(
    conn: duckdb.DuckDBPyConnection,
    columns: str,
    among: str,
    into: str,
    newest_first: bool = False,
    row_hash: str | None = None,
) -> None:
    """Temp table `into` (the columns of _checked): the rows of _checked (among those matching `among`)
    that repeat the values of `columns` of an earlier row (a later one with `newest_first`): the first
    (last) copy is not in it. `row_hash`: a column already holding hash(columns).

    The rows are listed, not marked in _checked: an UPDATE of a few rows rewrote the whole wide table
    (38 s of the 282 s load of the SF100 activities file)."""
    order = "_source_row DESC" if newest_first else "_source_row"
    hashed = row_hash or f"hash({columns})"
    # Each step is an operator DuckDB can spill (an aggregate, a semi join against a short list), so
    # a file of 100M rows stays within the memory limit; the repeated hashes and rows are few.
    repeated_hashes(
        conn.execute,
        f"SELECT {hashed} AS h FROM _checked WHERE {among}",
        "_repeated_hashes",
        REPEAT_SLICE_ROWS,
    )
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {into} AS
        SELECT * EXCLUDE (_copy) FROM (
            SELECT *, row_number() OVER (PARTITION BY {columns} ORDER BY {order}) AS _copy
            FROM _checked
            WHERE {among} AND {hashed} IN (SELECT h FROM _repeated_hashes)
        ) WHERE _copy > 1
        """
    )
    conn.execute("DROP TABLE _repeated_hashes")


def _is_text(conn: duckdb.DuckDBPyConnection, source: str) -> bool:
    name = source.strip('"')
    row = conn.execute(
        "SELECT data_type FROM duckdb_columns() WHERE table_name = '_stage' AND column_name = ?", [name]
    ).fetchall()
    return bool(row) and row[0][0] == "VARCHAR"
