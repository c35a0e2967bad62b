"""From a Dagster partition window to the window the incremental models read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta


def dbt_vars_for_window(start: datetime, end: datetime) -> dict[str, str]:
    """A partition window [start, end) of extract dates -> inclusive `min_date` / `max_date` vars.

    A single-run backfill hands the whole range over at once, so one dbt invocation covers it.
    """
    if end <= start:
        raise ValueError(f"empty partition window: {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    last_day = (end - timedelta(days=1)).date()
    return {"min_date": start.date().isoformat(), "max_date": last_day.isoformat()}


def dbt_window_environment(start: datetime, end: datetime) -> dict[str, str]:
    """The window as the environment variables `in_extract_window` reads (macros/extract_window.sql).

    Not `--vars`: dbt re-parses the whole project whenever its command-line vars change, which a new day
    always does; an environment variable read only at execution leaves partial parsing intact.
    """
    return window_environment(dbt_vars_for_window(start, end))


def window_environment(window: Mapping[str, str]) -> dict[str, str]:
    """{"min_date": ..., "max_date": ...} -> FUNNEL_DBT_MIN_DATE, FUNNEL_DBT_MAX_DATE."""
    return {f"FUNNEL_DBT_{name.upper()}": value for name, value in window.items()}
