"""`make run`: build the whole warehouse from every extract folder in the landing directory, in one run.

The run is a single-run backfill over the range of extract dates found, recorded in the Dagster instance
at $DAGSTER_HOME so `make ui` shows it. It runs as the schedule and the UI run it: each step in its own
process (see `STEP_EXECUTOR`), so the step processes rebuild the definitions from the same environment
variables.
"""

from __future__ import annotations

import sys
import time

import dagster as dg

from ingestion.landing import extract_dates
from orchestration.definitions import build_definitions, daily_warehouse_job
from orchestration.defs.publish.assets import record_failed_run
from orchestration.instance import release_orphaned_runs
from orchestration.settings import environment


def main() -> int:
    env = environment()
    dates = [d.isoformat() for d in extract_dates(env.landing_dir)]
    if not dates:
        print(f"no extract folders (YYYY-MM-DD) under {env.landing_dir}", file=sys.stderr)
        return 1
    definitions = build_definitions(env)
    print(f"building the warehouse from {len(dates)} extract folders, {dates[0]} .. {dates[-1]}")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        for run_id in release_orphaned_runs(instance):
            print(f"run {run_id} was killed mid-way: marked failed, its pool slot freed")
        result = dg.execute_job(
            dg.reconstructable(daily_warehouse_job),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": dates[0],
                "dagster/asset_partition_range_end": dates[-1],
            },
            raise_on_error=False,
        )
    elapsed = time.perf_counter() - started
    if not result.success:
        # As the failure sensor does under `make ui`: the published file keeps its data and says why.
        reason = record_failed_run(definitions.resources["warehouse"], result.run_id, result.all_events)
        print(f"the run failed after {elapsed:.0f} s; nothing was published: {reason}", file=sys.stderr)
        return 1
    print(f"done in {elapsed:.0f} s")
    print(f"working warehouse (pipeline only): {env.warehouse_path}")
    print(f"published for BI, open read-only:  {env.published_path}  (schemas marts, quality)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
