"""Preloaded by the fork server of the step executor (see `STEP_EXECUTOR` in orchestration/definitions.py).

Importing this module builds the definitions and resolves the job for the environment the run was started
with, and opens the run's Dagster instance once, so each step process forked from the server starts with
them ready instead of re-reading the dbt manifest and the extract contract (about a second per step, times
some forty steps), resolving the job (0.1 s, twice) and importing the instance's storage modules (0.2 s).

It also ties the server and its step processes to the run's process. Python's fork server is meant to
exit when the process that started it does, but with Dagster's threads loaded it lingers, and a step
process left on its own after its run was killed (`kill -9`, the OOM killer) would go on writing the
warehouse and hold DuckDB's lock on it. So each of them watches the run's process: when it is gone, a
step is interrupted (SIGINT, which Dagster handles as an interrupted step: dbt is stopped, the step
fails; 15 s later, if still there, it is killed with everything it started) and the server exits.
"""

import contextlib
import multiprocessing.util
import os
import signal
import threading
import time

import dagster as dg

from orchestration.definitions import job_for
from orchestration.settings import environment

RUN_PROCESS = os.getppid()  # the run's process starts the fork server
POLL_SECONDS = 1.0
GRACE_SECONDS = 15.0


def run_process_alive(pid: int = RUN_PROCESS) -> bool:
    """Alive and not a zombie (a killed process stays a zombie until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return os.path.isdir("/proc") is False  # without /proc (not Linux) nothing is watched
    return state not in ("Z", "X")


def _watch(on_gone) -> None:
    def loop() -> None:
        while run_process_alive():
            time.sleep(POLL_SECONDS)
        on_gone()

    threading.Thread(target=loop, name="run-process-watch", daemon=True).start()


def _interrupt_step() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(GRACE_SECONDS)
    # Still here: whatever the step started (dbt, log tailers) goes with it.
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)


def descendants(root: int) -> list[int]:
    """The live descendants of a process, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _after_fork(_: object) -> None:
    """Run in every step process forked from the server, right after the fork."""
    _watch(_interrupt_step)


def _warm_instance_modules() -> None:
    """Import what a step process imports to open the run's Dagster instance (its storage classes,
    SQLAlchemy, Alembic: some 350 modules, about 0.2 s per step), by opening it once here."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    try:
        instance = dg.DagsterInstance.get()
    except Exception:  # the step process opens it again and reports any error itself
        return
    instance.dispose()


multiprocessing.util.register_after_fork(_after_fork, _after_fork)
_watch(lambda: os._exit(0))
job_for(environment())
_warm_instance_modules()
