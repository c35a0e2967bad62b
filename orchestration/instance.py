"""Housekeeping of the local Dagster instance before `make run` launches a run.

A run whose process was killed (SIGKILL, a lost machine) stays STARTED in the instance and keeps its
slot in the `duckdb_writer` pool, so every later run would wait for it forever. Under `make ui` the
daemon's run monitoring frees such slots (dagster_home/dagster.yaml); `make run` has no daemon, so it
does the same here: a started run whose process is gone is marked failed and its slots are freed.
"""

import os

import dagster as dg

ACTIVE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START):
        if record.dagster_event is not None and record.dagster_event.pid is not None:
            return record.dagster_event.pid
    return None


def release_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the active runs whose process is gone and free their pool slots; returns their run ids."""
    released = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=ACTIVE)):
        run = record.dagster_run
        pid = _run_pid(instance, run.run_id)
        if pid is not None and _process_alive(pid):
            continue
        instance.report_run_failed(run, "the run's process is gone (killed or crashed); its slots were freed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released
