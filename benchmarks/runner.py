"""One timed run of the whole Dagster job on one extract date, for the harness.

    python -m benchmarks.runner --landing DIR --root DIR --partition YYYY-MM-DD --first-date YYYY-MM-DD \
        --out run.json

The job runs as in production: each step in its own process (the job's `STEP_EXECUTOR`), configured
through the same environment variables as `make run`. The warehouse, dbt target, DuckDB spill folder
and the Dagster instance live under --root, so nothing of a user's DAGSTER_HOME is read or written; the
instance is configured as `make run`'s (`instance_home`: the same pools, so every step claims its slot
of the `duckdb_writer` pool as in production). A second call with the same --root and a later
--partition is the daily incremental run on top of the first one's warehouse.

The JSON written holds every step's start and end (from the run's STEP_START / STEP_SUCCESS /
STEP_FAILURE events) with the asset group the step belongs to, the time to load the definitions (which
includes `dbt parse` when the target folder is new), the run's wall time, and row counts of raw and
marts afterwards (counted after the timed run, outside every figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date
from pathlib import Path

STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE")
INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"
"""The configuration of the instance `make run` and `make ui` use (concurrency pools, run monitoring)."""


def instance_home(home: Path) -> Path:
    """`home` made a Dagster home configured as the project's (INSTANCE_CONFIG copied in), so a benchmark
    run pays what a production run pays per step; created if missing."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
    return home


def step_groups(definitions) -> dict[str, str]:
    """Op name (the step key of an asset job) -> asset group; checks count with the asset they check.

    dbt's groups (dbt_staging, dbt_intermediate, dbt_marts) are one op, reported as `dbt`."""
    import dagster as dg

    graph = definitions.resolve_asset_graph()

    def group_of(key: dg.AssetKey) -> str:
        node = graph.get(key) if graph.has(key) else None
        name = (node.group_name if node else None) or "default"
        return "dbt" if name.startswith("dbt") else name

    groups: dict[str, str] = {}
    for assets_def in graph.assets_defs:
        if not assets_def.is_executable:
            continue
        keys = list(assets_def.keys) or [check.asset_key for check in assets_def.check_keys]
        if not keys:
            continue
        names = sorted({group_of(key) for key in keys})
        groups[assets_def.node_def.name] = names[0] if len(names) == 1 else "+".join(names)
    return groups


def _count_rows(db: Path) -> dict[str, dict[str, int]]:
    import duckdb

    counts: dict[str, dict[str, int]] = {}
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = conn.sql(
            "select table_schema, table_name from information_schema.tables "
            "where (table_schema = 'raw' and table_type = 'BASE TABLE') or table_schema = 'marts' "
            "order by all"
        ).fetchall()
        for schema, name in tables:
            n = conn.sql(f'select count(*) from "{schema}"."{name}"').fetchall()[0][0]
            counts.setdefault(schema, {})[name] = n
    return counts


def _rows_loaded(db: Path, partition: str) -> int:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.sql(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            ).fetchall()
        ]
        counts = [
            conn.execute(f'select count(*) from raw."{n}" where _extract_date = ?', [partition]).fetchall()
            for n in names
        ]
        return sum(rows[0][0] for rows in counts)


def dbt_timings(target_dir: Path, run_id: str, keep: int = 10) -> dict | None:
    """dbt's own timings of this run (run_results.json of its invocation): dbt's elapsed time, seconds
    per resource type and the slowest nodes. Each invocation writes under
    <dbt target folder>/<op>-<run id>-<uuid>/; the folder is removed once read (it is this run's)."""
    found = sorted(target_dir.glob(f"*-{run_id[:7]}-*/run_results.json"))
    if not found:
        return None
    results = json.loads(found[-1].read_text())
    by_type: dict[str, float] = {}
    for node in results["results"]:
        kind = node["unique_id"].split(".")[0]
        by_type[kind] = by_type.get(kind, 0.0) + node["execution_time"]
    slowest = sorted(results["results"], key=lambda n: -n["execution_time"])[:keep]
    for path in found:
        shutil.rmtree(path.parent, ignore_errors=True)
    return {
        "elapsed_seconds": results["elapsed_time"],
        "seconds_by_type": by_type,
        "slowest": {n["unique_id"].split(".", 2)[-1]: n["execution_time"] for n in slowest},
    }


def run(
    landing: Path,
    root: Path,
    partition: str,
    first_date: date,
    memory_limit: str,
    threads: int,
    select: str | None = None,
) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DAGSTER_HOME": str(root / "dagster_home"),
            "FUNNEL_WAREHOUSE_PATH": str(root / "funnel.duckdb"),
            "FUNNEL_PUBLISHED_PATH": str(root / "published" / "funnel.duckdb"),
            "FUNNEL_LANDING_DIR": str(landing),
            "FUNNEL_FIRST_EXTRACT_DATE": first_date.isoformat(),
            "FUNNEL_DUCKDB_MEMORY_LIMIT": memory_limit,
            "FUNNEL_DUCKDB_THREADS": str(threads),
            "FUNNEL_DUCKDB_TEMP_DIR": str(root / "tmp"),
            "FUNNEL_DBT_TARGET_DIR": str(root / "dbt_target"),
            "FUNNEL_PUBLISH_PARQUET": "false",
        }
    )
    instance_home(Path(os.environ["DAGSTER_HOME"]))
    import dagster as dg

    from orchestration.definitions import daily_warehouse_job, definitions_for
    from orchestration.settings import environment

    env = environment()
    started = time.perf_counter()
    definitions = definitions_for(env)
    definitions_seconds = time.perf_counter() - started
    groups = step_groups(definitions)

    with dg.DagsterInstance.get() as instance:
        run_started = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(daily_warehouse_job),
            instance=instance,
            tags={"dagster/partition": partition},
            raise_on_error=False,
            asset_selection=selected_assets(select),
        )
        run_seconds = time.perf_counter() - run_started
        events = []
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value in STEP_EVENTS:
                events.append(
                    {"step": entry.step_key, "event": event.event_type_value, "timestamp": entry.timestamp}
                )
        failure = None
        if not result.success:
            failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
            failure = "; ".join(
                f"{e.step_key}: {e.event_specific_data.error.message.strip()}" for e in failed
            )

    db = env.warehouse_path
    return {
        "partition": partition,
        "success": result.success,
        "failure": failure,
        "definitions_seconds": definitions_seconds,
        "run_seconds": run_seconds,
        "step_groups": groups,
        "events": events,
        "dbt": dbt_timings(env.dbt_target_dir, result.run_id),
        "rows": _count_rows(db) if db.exists() else {},
        "rows_loaded": _rows_loaded(db, partition) if db.exists() else 0,
        "warehouse_bytes": db.stat().st_size if db.exists() else 0,
    }


def selected_assets(select: str | None) -> list | None:
    """`--select`: asset keys ("marts/activity_norms"), comma-separated, each with everything downstream
    of it when it ends in "+" ("marts/activity_norms+"): the part of the job to re-run, as an engineer
    re-runs a failed part after a fix. None: the whole job."""
    if not select:
        return None
    import dagster as dg

    from orchestration.definitions import daily_warehouse_job

    graph = daily_warehouse_job().asset_layer.asset_graph
    selection = dg.AssetSelection.keys()
    for item in filter(None, (part.strip() for part in select.split(","))):
        key = dg.AssetKey(item.rstrip("+").split("/"))
        if not graph.has(key):
            raise SystemExit(f"--select: no asset {item.rstrip('+')!r} in the job")
        part = dg.AssetSelection.assets(key)
        selection = selection | (part.downstream() if item.endswith("+") else part)
    return sorted(selection.resolve(graph))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--partition", required=True)
    parser.add_argument("--first-date", type=date.fromisoformat, required=True)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--select", help="re-run only these assets (see selected_assets); default: the job")
    args = parser.parse_args()
    # Its own home (under --root): the run must not read or write the instance of `make run` / `make ui`.
    report = run(
        args.landing.resolve(),
        args.root.resolve(),
        args.partition,
        args.first_date,
        args.memory_limit,
        args.threads,
        args.select,
    )
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0 if report["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
