"""From a Dagster partition window to the dbt vars the incremental models read."""

from __future__ import annotations

from datetime import datetime, timedelta


def dbt_vars_for_window(start: datetime, end: datetime) -> dict[str, str]:
    """A partition window [start, end) of extract dates -> inclusive `min_date` / `max_date` vars.

    A single-run backfill hands the whole range over at once, so one dbt invocation covers it.
    """
    if end <= start:
        raise ValueError(f"empty partition window: {start:%Y-%m-%d} .. {end:%Y-%m-%d}")
    last_day = (end - timedelta(days=1)).date()
    return {"min_date": start.date().isoformat(), "max_date": last_day.isoformat()}
