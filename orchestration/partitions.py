"""Daily partitions by extract date, shared by every asset of the warehouse."""

from __future__ import annotations

from datetime import date

import dagster as dg

WRITER_POOL = "duckdb_writer"


def daily_extract_partitions(first_extract_date: date) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today's extract (landing during the day) is a partition too.
    return dg.DailyPartitionsDefinition(
        start_date=first_extract_date.isoformat(), timezone="UTC", end_offset=1
    )


def partition_dates(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The extract dates of this run: one, or a whole range in a single-run backfill."""
    return [date.fromisoformat(key) for key in context.partition_keys]


def partition_as_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    """ "Today" for a run: the last extract date of its partitions, never the wall clock, so a re-run
    of the same partitions gives the same figures."""
    return max(partition_dates(context))
