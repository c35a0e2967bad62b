"""The one place that decides the environment: paths and engine limits, from environment variables.

Read when the definitions load (never at import time). Every default runs the embedded sample from a
clone of the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Environment:
    warehouse_path: Path
    published_path: Path
    landing_dir: Path
    first_extract_date: date
    memory_limit: str
    threads: int
    temp_directory: Path
    dbt_target_dir: Path
    schedule_cron: str
    schedule_timezone: str
    freshness_deadline_cron: str
    audit_cron: str
    extract_settle_seconds: float
    export_parquet: bool


def environment() -> Environment:
    warehouse_path = Path(os.environ.get("FUNNEL_WAREHOUSE_PATH", REPO_ROOT / "warehouse" / "funnel.duckdb"))
    return Environment(
        warehouse_path=warehouse_path.resolve(),
        published_path=Path(
            os.environ.get(
                "FUNNEL_PUBLISHED_PATH", warehouse_path.resolve().parent / "published" / "funnel.duckdb"
            )
        ).resolve(),
        landing_dir=Path(
            os.environ.get("FUNNEL_LANDING_DIR", REPO_ROOT / "data" / "sample" / "extracts")
        ).resolve(),
        first_extract_date=date.fromisoformat(os.environ.get("FUNNEL_FIRST_EXTRACT_DATE", "2026-11-12")),
        memory_limit=os.environ.get("FUNNEL_DUCKDB_MEMORY_LIMIT", "2GB"),
        threads=int(os.environ.get("FUNNEL_DUCKDB_THREADS", "2")),
        temp_directory=Path(
            os.environ.get("FUNNEL_DUCKDB_TEMP_DIR", warehouse_path.resolve().parent / "tmp")
        ).resolve(),
        dbt_target_dir=Path(
            os.environ.get("FUNNEL_DBT_TARGET_DIR", REPO_ROOT / "dbt_project" / "target")
        ).resolve(),
        schedule_cron=os.environ.get("FUNNEL_SCHEDULE_CRON", "0 6 * * *"),
        schedule_timezone=os.environ.get("FUNNEL_SCHEDULE_TIMEZONE", "UTC"),
        freshness_deadline_cron=os.environ.get("FUNNEL_FRESHNESS_DEADLINE_CRON", "0 9 * * *"),
        audit_cron=os.environ.get("FUNNEL_AUDIT_CRON", "0 7 * * 0"),
        extract_settle_seconds=float(os.environ.get("FUNNEL_EXTRACT_SETTLE_SECONDS", "120")),
        export_parquet=os.environ.get("FUNNEL_PUBLISH_PARQUET", "false").lower() in ("1", "true", "yes"),
    )
