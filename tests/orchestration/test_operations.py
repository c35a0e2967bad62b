"""Running the warehouse day to day: readers never see a half-built version, a blocked or killed run
leaves the last publication intact, a backfill equals the same days built one by one, and a corrected
extract changes exactly what it corrects."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from orchestration.definitions import MAIN_JOB, build_definitions
from orchestration.settings import REPO_ROOT, environment
from tests.conftest import SAMPLE, range_tags

DAYS = ["2026-11-12", "2026-11-13", "2026-11-14", "2026-11-15"]


def small_landing(root: Path) -> Path:
    """The sample's full dump and the three daily drops after it."""
    landing = root / "landing"
    for day in DAYS:
        shutil.copytree(SAMPLE / "extracts" / day, landing / day)
    return landing


def make_env(root: Path, landing: Path):
    return replace(
        environment(),
        warehouse_path=root / "wh" / "funnel.duckdb",
        published_path=root / "wh" / "published" / "funnel.duckdb",
        landing_dir=landing,
        first_extract_date=date.fromisoformat(DAYS[0]),
        memory_limit="2GB",
        temp_directory=root / "wh" / "tmp",
        dbt_target_dir=root / "dbt_target",
    )


def run(env, first: str, last: str | None = None, raise_on_error=True) -> dg.ExecuteInProcessResult:
    job = build_definitions(env).resolve_job_def(MAIN_JOB)
    tags = range_tags(first, last) if last else {"dagster/partition": first}
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=tags, raise_on_error=raise_on_error
    )


def published(env, sql: str) -> list[tuple]:
    with duckdb.connect(str(env.published_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


READER = """
import duckdb, json, os, sys, time
path, stop, out = sys.argv[1:4]
answers, errors = [], []
while not os.path.exists(stop):
    try:
        with duckdb.connect(path, read_only=True) as c:
            version = c.execute("SELECT max(version) FROM quality.publication_log WHERE status = 'published'").fetchall()[0][0]
            deals = c.execute("SELECT count(*) FROM marts.dim_deals").fetchall()[0][0]
            answers.append([version, deals])
    except Exception as error:
        errors.append(repr(error))
    time.sleep(0.005)
json.dump({"answers": answers, "errors": errors}, open(out, "w"))
"""


def test_a_reader_in_another_process_only_ever_sees_complete_versions(tmp_path):
    env = make_env(tmp_path, small_landing(tmp_path))
    assert run(env, DAYS[0], DAYS[1]).success
    first = published(env, "SELECT count(*) FROM marts.dim_deals")[0][0]

    stop, out = tmp_path / "stop", tmp_path / "answers.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(env.published_path), str(stop), str(out)])
    try:
        time.sleep(0.5)
        assert run(env, DAYS[0], DAYS[3]).success  # the pipeline is not blocked by the open reader
        time.sleep(0.5)
    finally:
        stop.touch()
        reader.wait(timeout=60)
    second = published(env, "SELECT count(*) FROM marts.dim_deals")[0][0]
    seen = json.loads(out.read_text())

    assert first != second
    assert seen["errors"] == []
    assert len(seen["answers"]) > 20
    assert {tuple(a) for a in seen["answers"]} <= {(1, first), (2, second)}
    assert {a[0] for a in seen["answers"]} == {1, 2}


def test_a_failing_blocking_check_leaves_the_published_data_and_says_why(tmp_path, monkeypatch):
    from orchestration.defs.ingestion import checks
    from orchestration.defs.publish.assets import record_failed_run

    env = make_env(tmp_path, small_landing(tmp_path))
    assert run(env, DAYS[0], DAYS[1]).success
    before = published(env, "SELECT * FROM marts.fct_client_turnover ORDER BY ALL")

    real_validate = checks.validate_relation

    def failing_validate(table_name, relation, **kwargs):
        if table_name == "invoices":
            # rows that break the suite
            relation = relation.project("* REPLACE (NULL::VARCHAR AS invoice_id)")
        return real_validate(table_name, relation, **kwargs)

    monkeypatch.setattr(checks, "validate_relation", failing_validate)
    definitions = build_definitions(env)
    result = definitions.resolve_job_def(MAIN_JOB).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[3]), raise_on_error=False
    )
    assert not result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["published", "warehouse"]) not in materialized
    record_failed_run(definitions.resources["warehouse"], result.run_id, result.all_events)

    assert published(env, "SELECT * FROM marts.fct_client_turnover ORDER BY ALL") == before
    log = published(env, "SELECT status, reason, data_version FROM quality.publication_log ORDER BY version")
    assert log[0][0] == "published"
    assert log[-1][0] == "blocked"
    assert "raw/invoices:contract_expectations failed" in log[-1][1]
    assert log[-1][2] == 1


def surviving_workers(group: int) -> list[str]:
    """Processes of the killed run's group that could still touch the warehouse: everything but
    multiprocessing's resource tracker (it holds no file and exits once every pipe to it is closed). `-ww`: the
    full command line, which ps otherwise cuts at its default width (a long checkout path hid the name)."""
    listing = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "-g", str(group)], capture_output=True, text=True, check=False
    ).stdout
    return [line for line in listing.splitlines() if line.strip() and "resource_tracker" not in line]


def test_a_run_killed_mid_way_leaves_the_publication_intact_and_the_next_run_recovers(tmp_path):
    landing = small_landing(tmp_path)
    env = make_env(tmp_path, landing)
    process_env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "FUNNEL_WAREHOUSE_PATH": str(env.warehouse_path),
        "FUNNEL_PUBLISHED_PATH": str(env.published_path),
        "FUNNEL_LANDING_DIR": str(landing),
        "FUNNEL_FIRST_EXTRACT_DATE": DAYS[0],
        "FUNNEL_DBT_TARGET_DIR": str(env.dbt_target_dir),
        "FUNNEL_DUCKDB_MEMORY_LIMIT": "2GB",
    }
    (tmp_path / "dagster_home").mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", tmp_path / "dagster_home")
    command = [sys.executable, "-m", "orchestration.run"]
    subprocess.run(command, env=process_env, check=True, capture_output=True, cwd=REPO_ROOT)
    before = published(env, "SELECT * FROM marts.dim_deals ORDER BY ALL")

    # Kill the next run in the middle of its dbt build: the working file is being written.
    (landing / DAYS[3] / "deals.csv").write_text((landing / DAYS[3] / "deals.csv").read_text())
    victim = subprocess.Popen(
        command,
        env=process_env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in victim.stdout:
        if "warehouse_dbt_models" in line and "STEP_START" in line:
            time.sleep(1.0)
            break
    # Only the run's own process, as an OOM kill or `kill -9 <pid>` would: its step processes (forked
    # from a fork server) must not live on and hold the warehouse.
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and surviving_workers(victim.pid):
        time.sleep(0.5)
    assert surviving_workers(victim.pid) == [], "step processes outlived their killed run"

    assert published(env, "SELECT * FROM marts.dim_deals ORDER BY ALL") == before
    recovered = subprocess.run(command, env=process_env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert recovered.returncode == 0, recovered.stdout[-2000:] + recovered.stderr[-2000:]
    assert published(env, "SELECT max(version) FROM quality.publication_log WHERE status = 'published'") == [
        (2,)
    ]
    assert (
        published(env, "SELECT * FROM marts.dim_deals ORDER BY ALL") == before
    )  # same extracts, same figures


# Tables that record each run (one snapshot per run date) rather than the data: a range run writes one
# snapshot, four daily runs write four. Their latest snapshot is compared instead.
RUN_HISTORY = {"forecast_history", "forecast_history_deals", "forecast_changes"}


def marts_frames(env) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(env.published_path), read_only=True) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' ORDER BY 1"
            ).fetchall()
        ]
        return {t: conn.sql(f"SELECT * FROM marts.{t} ORDER BY ALL").pl() for t in tables}


def marts_content(env) -> dict[str, list[tuple]]:
    return {t: frame.rows() for t, frame in marts_frames(env).items()}


def test_a_backfill_over_a_range_equals_the_same_days_built_one_by_one(tmp_path):
    landing = small_landing(tmp_path)
    at_once = make_env(tmp_path / "at_once", landing)
    day_by_day = make_env(tmp_path / "day_by_day", landing)

    assert run(at_once, DAYS[0], DAYS[-1]).success
    for day in DAYS:
        assert run(day_by_day, day).success

    expected, actual = marts_frames(at_once), marts_frames(day_by_day)
    assert set(expected) == set(actual)
    for table in sorted(set(expected) - RUN_HISTORY):
        # Floats summed in another order may differ in the last bits; everything else must be equal.
        assert_frame_equal(actual[table], expected[table], check_exact=False, rel_tol=1e-9, abs_tol=1e-6)
    last = date.fromisoformat(DAYS[-1])
    for table in ("forecast_history", "forecast_history_deals"):
        latest = [frame.filter(pl.col("as_of_date") == last) for frame in (expected[table], actual[table])]
        assert latest[0].height > 0
        assert_frame_equal(latest[1], latest[0], check_exact=False, rel_tol=1e-9, abs_tol=1e-6)
    assert actual["forecast_history"]["as_of_date"].n_unique() == len(DAYS)

    # Each day's `dbt build` started from the parse the definitions made: none parsed the whole project
    # again because its window, its profile or a missing partial_parse.msgpack differed (about 2 s each).
    logs = sorted(day_by_day.dbt_target_dir.glob("warehouse_dbt_models-*/dbt.log"))
    assert len(logs) == len(DAYS)
    assert [log.parent.name for log in logs if "Unable to do partial parsing" in log.read_text()] == []
    # Data tests ran in every day's build; the models' unit tests (code, not data) are left to CI.
    kinds = {
        node["unique_id"].split(".")[0]
        for log in logs
        for node in json.loads((log.parent / "run_results.json").read_text())["results"]
    }
    assert "test" in kinds and "unit_test" not in kinds


def test_a_corrected_extract_changes_exactly_what_it_corrects(tmp_path):
    landing = small_landing(tmp_path)
    env = make_env(tmp_path, landing)
    assert run(env, DAYS[0], DAYS[-1]).success
    before = marts_content(env)

    # A corrected drop for day 3: one open deal's amount was wrong.
    deals_file = landing / DAYS[2] / "deals.csv"
    lines = deals_file.read_text().splitlines()
    header = lines[0].split(",")
    amount, status = header.index("amount"), header.index("status")
    for n, line in enumerate(lines[1:], start=1):
        fields = line.split(",")
        if len(fields) == len(header) and fields[status] == "open" and fields[amount]:
            deal_id = fields[0]
            fields[amount] = f"{float(fields[amount]) + 1000:.2f}"
            lines[n] = ",".join(fields)
            break
    deals_file.write_text("\n".join(lines) + "\n")
    assert run(env, DAYS[2]).success
    after = marts_content(env)

    def changed(table: str) -> set[tuple]:
        return set(before[table]) ^ set(after[table])

    deal_rows = changed("dim_deals")
    assert {row[0] for row in deal_rows} == {deal_id} and len(deal_rows) == 2
    assert {row[1] for row in changed("fct_stage_transitions")} == {deal_id}
    assert changed("fct_client_turnover") == set()
    assert changed("dim_clients") == set()
