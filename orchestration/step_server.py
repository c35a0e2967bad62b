"""Preloaded by the fork server of the step executor (see `STEP_EXECUTOR` in orchestration/definitions.py).

Importing this module builds the definitions for the environment the run was started with, so each step
process forked from the server starts with them ready instead of re-reading the dbt manifest and the
extract contract (about a second per step, times some sixty steps).
"""

from orchestration.definitions import definitions_for
from orchestration.settings import environment

definitions_for(environment())
