"""A throwaway warehouse under tmp and the dbt project run against it with dbtRunner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dbt_raw_extracts
import duckdb
import pytest
from dbt.cli.main import dbtRunner

from orchestration.defs.dbt.partitions import window_environment

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


class Warehouse:
    """One DuckDB file and the dbt runs against it; nothing is written inside the repository."""

    def __init__(self, root: Path, project_dir: Path = DBT_PROJECT_DIR) -> None:
        self.root = root
        self.path = root / "warehouse.duckdb"
        self.project_dir = project_dir

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(str(self.path))
        try:
            yield con
        finally:
            con.close()

    @property
    def dbt_log(self) -> Path:
        return self.root / "logs" / "dbt.log"

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()

    def dbt(self, *args: str, dbt_vars: dict | None = None, window_env: dict | None = None) -> None:
        """dbt `args` on this warehouse; the window as `--vars` (dbt_vars) or as the environment variables
        Dagster sets (window_env: {"min_date": ..., "max_date": ...})."""
        command = [
            *args,
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.project_dir),
            "--target-path",
            str(self.root / "target"),
            "--log-path",
            str(self.root / "logs"),
        ]
        if dbt_vars:
            command += ["--vars", json.dumps(dbt_vars)]
        env = {
            "FUNNEL_WAREHOUSE_PATH": str(self.path),
            "FUNNEL_DUCKDB_TEMP_DIR": str(self.root / "duckdb_tmp"),
            **window_environment(window_env or {}),
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = dbtRunner().invoke(command)
        if not result.success:
            failures = [
                f"{r.node.unique_id}: {r.status} {r.message}"
                for r in (result.result or [])
                if str(r.status) not in ("success", "pass")
            ]
            raise AssertionError(f"dbt {' '.join(args)} failed: {result.exception or failures}")


def new_warehouse(root: Path, extract_dates: list, project_dir: Path = DBT_PROJECT_DIR) -> Warehouse:
    warehouse = Warehouse(root, project_dir)
    with warehouse.connect() as con:
        dbt_raw_extracts.create_raw_tables(con)
        dbt_raw_extracts.load_integrity_issues(con)
        for extract_date in extract_dates:
            dbt_raw_extracts.load_extract(con, extract_date)
    return warehouse
