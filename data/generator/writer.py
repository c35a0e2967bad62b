"""Writes the tables into the landing layout: `<out>/extracts/<YYYY-MM-DD>/<table>.csv|.parquet`.

Daily layout: the dump folder holds the latest version of every key known on the dump date; each
later folder holds the latest version of every key written that day. Dump layout: one folder at the
end date with the latest version of every key. Files with no rows are not written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data.contract import Table
from data.generator.config import GeneratorConfig
from data.generator.defects import FileMarkers, is_csv
from data.generator.timeutil import epoch

_CSV_CHUNK_ROWS = 500_000
_PARQUET_TYPES = {
    "string": pl.String,
    "integer": pl.Int64,
    "decimal": pl.Float64,
    "double": pl.Float64,
    "boolean": pl.Boolean,
    "date": pl.Date,
    "timestamp": pl.Datetime("us", "UTC"),
}


def _latest(frame: pl.DataFrame, key: list[str], versioned: bool) -> pl.DataFrame:
    if not versioned:
        return frame
    return frame.sort("_known_at", maintain_order=True).unique(key, keep="last", maintain_order=True)


def partitions(
    frame: pl.DataFrame, key: list[str], cfg: GeneratorConfig
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Rows of each extract folder: the latest version per key as of the dump, then per later day.

    Folders without rows are skipped. Partitions are yielded one at a time to bound memory.
    """
    versioned = frame.height != frame.select(pl.struct(key).n_unique()).item()
    if cfg.layout == "dump":
        yield cfg.end_date, _latest(frame, key, versioned)
        return
    dump_day = epoch(cfg.dump_date) // 86_400
    day = pl.col("_known_at") // 86_400
    part = _latest(frame.filter(day <= dump_day), key, versioned)
    if len(part):
        yield cfg.dump_date, part
    del part
    later = frame.filter(day > dump_day).with_columns(_day=day)
    for d in range(1, cfg.daily_days + 1):
        part = _latest(later.filter(pl.col("_day") == dump_day + d).drop("_day"), key, versioned)
        if len(part):
            yield cfg.dump_date + timedelta(days=d), part


def _fixed2(col: pl.Expr) -> pl.Expr:
    cents = (col * 100).round(0).cast(pl.Int64)
    sign = pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    mag = cents.abs()
    return sign + (mag // 100).cast(pl.String) + "." + (mag % 100).cast(pl.String).str.zfill(2)


def _quote(col: pl.Expr) -> pl.Expr:
    needs = col.str.contains(r'[,"\r\n]')
    return pl.when(needs).then('"' + col.str.replace_all('"', '""', literal=True) + '"').otherwise(col)


def _csv_field(name: str, kind: str) -> pl.Expr:
    col = pl.col(name)
    text = {
        "string": col,
        "integer": col.cast(pl.String),
        "decimal": _fixed2(col),
        "double": col.round(6).cast(pl.String),
        "boolean": pl.when(col).then(pl.lit("true")).otherwise(pl.lit("false")),
        "date": col.dt.strftime("%Y-%m-%d"),
        "timestamp": col.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }[kind]
    return text.fill_null("").alias(name)


def _csv_lines(frame: pl.DataFrame, table: Table, key: str, marks: FileMarkers) -> pl.DataFrame:
    """One text column `line` per row: fields rendered, bad values set, malformed rows short a field."""
    names = table.column_names
    invalid_col, invalid = marks.invalid.get(table.name, ("", {}))
    text = frame.select(
        [_csv_field(c.name, c.type) for c in table.columns]
        + [pl.col(key).is_in(marks.malformed.get(table.name, [])).alias("_bad")]
    )
    if invalid:
        text = text.with_columns(
            pl.when(pl.col(key).is_in(list(invalid)))
            .then(pl.col(key).replace(invalid))
            .otherwise(pl.col(invalid_col))
            .alias(invalid_col)
        )
    text = text.with_columns(_quote(pl.col(c)).alias(c) for c in names)
    dropped = names[len(names) // 2]
    return text.select(
        pl.when(pl.col("_bad"))
        .then(pl.concat_str([pl.col(c) for c in names if c != dropped], separator=","))
        .otherwise(pl.concat_str([pl.col(c) for c in names], separator=","))
        .alias("line")
    )


def _write_csv(frame: pl.DataFrame, table: Table, path: Path, key: str, marks: FileMarkers) -> None:
    with path.open("wb") as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        for offset in range(0, len(frame), _CSV_CHUNK_ROWS):
            chunk = _csv_lines(frame.slice(offset, _CSV_CHUNK_ROWS), table, key, marks)
            chunk.write_csv(fh, include_header=False, quote_style="never")


def _write_parquet(frame: pl.DataFrame, table: Table, path: Path) -> None:
    typed = frame.select(pl.col(c.name).cast(_PARQUET_TYPES[c.type]) for c in table.columns)
    typed.write_parquet(path, compression="zstd")


def write_table(
    frame: pl.DataFrame,
    table: Table,
    cfg: GeneratorConfig,
    out_dir: Path,
    marks: FileMarkers,
    tick: Callable[[str], Any],
) -> tuple[dict[str, int], dict[tuple[str, str], list[dict[str, Any]]]]:
    """Write one table in every folder it has rows for; return row counts and defect row locations."""
    key = list(table.primary_key)
    csv = is_csv(cfg, table.name)
    suffix = "csv" if csv else "parquet"
    counts: dict[str, int] = {}
    located: dict[tuple[str, str], list[dict[str, Any]]] = {}
    dup = marks.duplicate.get(table.name, [])
    wanted = {(cls, tbl): keys for (cls, tbl), keys in marks.located.items() if tbl == table.name}
    for day, part in partitions(frame, key, cfg):
        if table.name == "deal_stage_history":
            seed = np.random.SeedSequence([cfg.seed, day.toordinal()])
            part = part[np.random.default_rng(seed).permutation(len(part))]
        elif len(key) > 1 or not part[key[0]].is_sorted():
            part = part.sort(key)
        if dup:
            is_dup = part[key[0]].is_in(dup).to_numpy()
            part = part[np.repeat(np.arange(len(part)), np.where(is_dup, 2, 1))]
        folder = out_dir / "extracts" / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{table.name}.{suffix}"
        if csv:
            _write_csv(part, table, path, key[0], marks)
        else:
            _write_parquet(part, table, path)
        counts[day.isoformat()] = len(part)
        rows = part.select(pl.int_range(1, pl.len() + 1).alias("row"), pl.col(key[0]).alias("key"))
        for (cls, tbl), members in wanted.items():
            hits = rows.filter(pl.col("key").is_in(members))
            if cls == "duplicate_row":  # reported at the copy, the second line of the pair
                hits = hits.unique("key", keep="last", maintain_order=True)
            located.setdefault((cls, tbl), []).extend(
                {"extract_date": day.isoformat(), "file": path.name, "row": r, "key": k}
                for r, k in hits.iter_rows()
            )
        tick(f"{table.name} {day.isoformat()}")
    return counts, located
