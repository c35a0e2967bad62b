"""Reading generated extracts back: every file of a table, and the latest version per key.

A reference loader for tests and checks (not the ingestion): CSV is read with the `csv` module as
text (empty field = null) so malformed lines can be set aside; Parquet is read typed and rendered
as the same text the CSV writer would produce, so both formats compare equal.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl

from data.contract import Table, load_contract


def table_files(out_dir: Path, table: str) -> list[Path]:
    """The files of a table, in extract-date order."""
    return sorted(Path(out_dir).glob(f"extracts/*/{table}.*"), key=lambda p: p.parent.name)


def _render(frame: pl.DataFrame, table: Table) -> pl.DataFrame:
    exprs = []
    for c in table.columns:
        col = pl.col(c.name)
        if c.type == "timestamp":
            exprs.append(col.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif c.type == "date":
            exprs.append(col.dt.strftime("%Y-%m-%d"))
        elif c.type == "decimal":
            exprs.append(col.round(2).cast(pl.String))
        elif c.type == "boolean":
            exprs.append(pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false")))
        else:
            exprs.append(col.cast(pl.String))
    return frame.select(e.alias(c.name) for e, c in zip(exprs, table.columns, strict=True))


def read_file(path: Path, table: Table) -> tuple[pl.DataFrame, list[int]]:
    """Rows of one file as text (`_row` = 1-based data row) and the row numbers of malformed lines."""
    names = table.column_names
    if path.suffix == ".parquet":
        frame = _render(pl.read_parquet(path), table)
        return frame.with_columns(pl.int_range(1, pl.len() + 1).alias("_row")), []
    good, bad = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header != names:
            raise ValueError(f"{path}: header {header} differs from the contract {names}")
        for row_no, row in enumerate(reader, start=1):
            if len(row) != len(names):
                bad.append(row_no)
                continue
            good.append([v if v != "" else None for v in row] + [row_no])
    frame = pl.DataFrame(good, schema={**{n: pl.String for n in names}, "_row": pl.Int64}, orient="row")
    return frame, bad


def read_all(out_dir: Path, table: str) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """All rows of a table with `_extract_date`, `_row`; and the malformed row numbers per file."""
    spec = load_contract().table(table)
    frames, malformed = [], {}
    for path in table_files(out_dir, table):
        frame, bad = read_file(path, spec)
        frames.append(frame.with_columns(pl.lit(path.parent.name).alias("_extract_date")))
        if bad:
            malformed[f"{path.parent.name}/{path.name}"] = bad
    return pl.concat(frames), malformed


def latest_per_key(rows: pl.DataFrame, table: str) -> pl.DataFrame:
    """The latest version of every key: latest extract date, then latest version column, then file row.

    Text timestamps in the generated format (`YYYY-MM-DDTHH:MM:SSZ`) sort chronologically as text.
    """
    spec = load_contract().table(table)
    order = ["_extract_date", *([spec.version_column] if spec.version_column else []), "_row"]
    return (
        rows.sort(order, nulls_last=False)
        .unique(list(spec.primary_key), keep="last", maintain_order=True)
        .drop("_extract_date", "_row")
        .sort(list(spec.primary_key))
    )
