"""The warehouse resource: where the DuckDB file and the landing folder are, and how to open the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from ingestion.warehouse import DuckDBSettings, connect


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file (one writer at a time: every writing asset is in pool `duckdb_writer`)."""

    duckdb_path: str
    landing_dir: str
    published_path: str | None = None
    export_parquet: bool = False
    memory_limit: str = "4GB"
    threads: int = 2
    temp_directory: str | None = None

    @property
    def landing_path(self) -> Path:
        return Path(self.landing_dir)

    @property
    def published_file(self) -> Path:
        """The read-only copy BI tools open; beside the working file unless set."""
        if self.published_path:
            return Path(self.published_path)
        return Path(self.duckdb_path).parent / "published" / Path(self.duckdb_path).name

    def settings(self) -> DuckDBSettings:
        return DuckDBSettings(
            path=Path(self.duckdb_path),
            memory_limit=self.memory_limit,
            threads=self.threads,
            temp_directory=Path(self.temp_directory) if self.temp_directory else None,
        )

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with connect(self.settings(), read_only=read_only) as conn:
            yield conn
