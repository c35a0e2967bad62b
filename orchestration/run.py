"""`make run`: build the whole warehouse from every extract folder in the landing directory, in one run.

The run is a single-run backfill over the range of extract dates found, recorded in the Dagster instance
at $DAGSTER_HOME so `make ui` shows it.
"""

from __future__ import annotations

import re
import sys
import time

import dagster as dg

from orchestration.definitions import MAIN_JOB, build_definitions
from orchestration.settings import environment

DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def main() -> int:
    env = environment()
    dates = sorted(p.name for p in env.landing_dir.iterdir() if p.is_dir() and DATE_FOLDER.match(p.name))
    if not dates:
        print(f"no extract folders (YYYY-MM-DD) under {env.landing_dir}", file=sys.stderr)
        return 1
    job = build_definitions(env).resolve_job_def(MAIN_JOB)
    print(f"building the warehouse from {len(dates)} extract folders, {dates[0]} .. {dates[-1]}")
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": dates[0],
                "dagster/asset_partition_range_end": dates[-1],
            },
            raise_on_error=False,
        )
    elapsed = time.perf_counter() - started
    if not result.success:
        print(f"the run failed after {elapsed:.0f} s; see the log above or `make ui`", file=sys.stderr)
        return 1
    print(f"done in {elapsed:.0f} s")
    print(f"warehouse: {env.warehouse_path}  (schemas raw, quality, marts)")
    print("open it read-only, e.g.: duckdb -readonly " + str(env.warehouse_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
