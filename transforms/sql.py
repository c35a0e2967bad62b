"""DuckDB under the transforms: the joins and aggregations over deals, stage events, activities and
invoice lines run as SQL, where the engine streams them within its memory limit, and only their small
results come to Polars.

A transform's SQL names its inputs as `{name}` placeholders. `Tables` binds the names either to warehouse
relations (`"marts.dim_deals"`, what the assets do through the `*_from_tables` functions: nothing is
read that a query does not need) or to Polars frames registered on a private in-memory connection (what
the transforms' frame-taking functions do, for tests and ad-hoc use: the same SQL over literal frames).
Shared intermediate results become temporary tables of the connection and are dropped when the
`Tables` is closed. No I/O happens here beyond the connection the caller gives.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import duckdb
import polars as pl

Source = str | pl.DataFrame | pl.LazyFrame
"""A warehouse relation ("schema.name") or a frame."""

_RELATION = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_serial = itertools.count()
log = logging.getLogger(__name__)
"""DEBUG: each statement `Tables` runs, with its seconds (`benchmarks.profile_marts --statements`)."""


def date_literal(day: date) -> str:
    """A DATE literal for SQL text (from a date object, never from extract text)."""
    return f"DATE '{date.fromordinal(day.toordinal()).isoformat()}'"


def timestamp_literal(at: datetime) -> str:
    return f"TIMESTAMP '{at.isoformat(sep=' ')}'"


def end_of_day_literal(day: date) -> str:
    """Midnight after `day`: `x < end_of_day_literal(day)` keeps what happened on or before it."""
    return timestamp_literal(datetime.combine(day + timedelta(days=1), datetime.min.time()))


class Tables:
    """The named inputs of a transform's SQL on one connection."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, sources: Mapping[str, Source]) -> None:
        self.conn = conn
        self._names: dict[str, str] = {}
        self._views: list[str] = []
        self._temp_tables: list[str] = []
        for name, source in sources.items():
            self.add(name, source)

    def add(self, name: str, source: Source) -> None:
        """Bind `{name}` to a relation of the warehouse or to a frame (registered as a view)."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain name: {name!r}")
        if isinstance(source, str):
            if not _RELATION.match(source):
                raise ValueError(f"not a schema.relation: {source!r}")
            self._names[name] = source
            return
        frame = source.collect() if isinstance(source, pl.LazyFrame) else source
        view = f"_input_{name}_{next(_serial)}"
        self.conn.register(view, frame.to_arrow())
        self._views.append(view)
        self._names[name] = view

    def binds(self, name: str) -> bool:
        """Whether `{name}` is bound (a source given by the caller, or a result defined earlier)."""
        return name in self._names

    def text(self, sql: str, **params: object) -> str:
        return sql.format(**self._names, **params)

    def frame(self, sql: str, **params: object) -> pl.DataFrame:
        """The result of `sql` (placeholders bound) as a Polars frame."""
        start = time.perf_counter()
        result = self.conn.sql(self.text(sql, **params)).pl()
        if log.isEnabledFor(logging.DEBUG):
            first = " ".join(sql.split())[:80]
            log.debug("frame %s rows %.2f s: %s", f"{result.height:,}", time.perf_counter() - start, first)
        return result

    def define(self, name: str, sql: str, **params: object) -> None:
        """Let later SQL name the subquery `sql` as `{name}` (computed where it is read, never stored)."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain name: {name!r}")
        self._names[name] = f"({self.text(sql, **params)})"

    def materialize(self, name: str, sql: str, into: str | None = None, **params: object) -> None:
        """Run `sql` once into a temporary table that later SQL names `{name}`; with `into`
        ("schema.table"), into that table of the warehouse instead, replaced and kept after close."""
        if not _NAME.match(name):
            raise ValueError(f"not a plain name: {name!r}")
        if into is not None and not _RELATION.match(into):
            raise ValueError(f"not a schema.relation: {into!r}")
        table = into or f"_tmp_{name}_{next(_serial)}"
        start = time.perf_counter()
        create = "CREATE OR REPLACE TABLE" if into else "CREATE TEMP TABLE"
        self.conn.execute(f"{create} {table} AS {self.text(sql, **params)}")
        log.debug("materialize %s %.2f s", name, time.perf_counter() - start)
        if into is None:
            self._temp_tables.append(table)
        self._names[name] = table

    def close(self) -> None:
        for table in self._temp_tables:
            self.conn.execute(f"DROP TABLE IF EXISTS {table}")
        for view in self._views:
            self.conn.unregister(view)
        self._temp_tables, self._views = [], []


@contextmanager
def tables(conn: duckdb.DuckDBPyConnection, sources: Mapping[str, Source]) -> Iterator[Tables]:
    """`Tables` on the caller's connection (the warehouse), cleaned up on exit."""
    bound = Tables(conn, sources)
    try:
        yield bound
    finally:
        bound.close()


@contextmanager
def frame_tables(sources: Mapping[str, Source], threads: int = 2) -> Iterator[Tables]:
    """`Tables` over Polars frames on a private in-memory DuckDB connection."""
    conn = duckdb.connect(config={"threads": threads})
    conn.execute("SET enable_progress_bar = false")  # as ingestion.warehouse.connect: no bars in logs
    try:
        with tables(conn, sources) as bound:
            yield bound
    finally:
        conn.close()
