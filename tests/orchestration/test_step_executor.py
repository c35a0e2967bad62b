"""The main job's executor: each step in its own process, one at a time, as `make run`, the schedule and
the UI run it (the other tests run the job in-process for speed, so this is where the real path is
exercised)."""

import itertools
import json
import os
import subprocess
import sys

from orchestration.settings import REPO_ROOT

# Run in a fresh interpreter: the fork server of multiprocessing is one per process and keeps the
# environment variables it started with, so it must not be shared with other tests.
SCRIPT = """
import json, sys
import dagster as dg
from orchestration.definitions import daily_warehouse_job

selection = [dg.AssetKey(["raw", "stage_catalogue"]), dg.AssetKey(["raw", "owners"])]
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        dg.reconstructable(daily_warehouse_job),
        instance=instance,
        asset_selection=selection,
        tags={"dagster/partition": sys.argv[1]},
        raise_on_error=False,
    )
    pids, spans = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type_value == "STEP_START":
            pids[entry.step_key] = event.pid
            spans[entry.step_key] = [entry.timestamp]
        elif event.event_type_value == "STEP_SUCCESS":
            spans[entry.step_key].append(entry.timestamp)
print(json.dumps({"success": result.success, "pids": pids, "spans": spans}))
"""


def test_steps_run_one_at_a_time_each_in_its_own_process(tmp_path):
    landing = REPO_ROOT / "data" / "sample" / "extracts"
    first = sorted(p.name for p in landing.iterdir() if p.is_dir())[0]
    (tmp_path / "home").mkdir()
    env = os.environ | {
        "DAGSTER_HOME": str(tmp_path / "home"),
        "FUNNEL_WAREHOUSE_PATH": str(tmp_path / "wh" / "funnel.duckdb"),
        "FUNNEL_LANDING_DIR": str(landing),
        "FUNNEL_FIRST_EXTRACT_DATE": first,
        "FUNNEL_DBT_TARGET_DIR": str(tmp_path / "dbt_target"),
        "FUNNEL_DUCKDB_MEMORY_LIMIT": "1GB",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, first],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["success"], done.stderr[-3000:]
    pids = report["pids"]
    # The two loads (one step, the selected part of raw_extracts), the contract checks of both tables
    # (one step) and the freshness checks.
    assert {"raw_extracts", "raw_contract_expectations"} <= set(pids)
    assert len(set(pids.values())) == len(pids)
    # One at a time: no two steps overlap (DuckDB allows one writing process per file).
    spans = sorted(report["spans"].values())
    assert all(len(span) == 2 for span in spans)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))

    import duckdb

    with duckdb.connect(str(tmp_path / "wh" / "funnel.duckdb"), read_only=True) as conn:
        counts = conn.sql(
            "select (select count(*) from raw.stage_catalogue), (select count(*) from raw.owners)"
        ).fetchall()[0]
    assert counts[0] > 0 and counts[1] > 0
