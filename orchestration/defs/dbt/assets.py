"""The dbt models as Dagster assets: keys and groups come from each node's schema and folder."""

import importlib.metadata
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets
from packaging import version

from ingestion.warehouse import DuckDBSettings
from orchestration.defs.dbt.partitions import dbt_window_environment
from orchestration.partitions import WRITER_POOL
from orchestration.resources import WarehouseResource
from orchestration.settings import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """Models are keyed [schema, name] (`marts/fct_stage_transitions`) and grouped by their top folder;
    sources are keyed by the relation they read ([schema, table]), which are the ingestion assets' keys."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            # The relation a source reads, raw.deals: the key of the ingestion asset that writes it.
            table = dbt_resource_props.get("identifier") or dbt_resource_props["name"]
            return dg.AssetKey([dbt_resource_props["schema"], table])
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props["fqn"][1]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props["fqn"]
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"


# dbt as installed with this interpreter's packages: its version is the dbt-core package's.
DBT_BESIDE_PYTHON = Path(sys.executable).parent / "dbt"


def dbt_executable() -> str:
    """dbt from this interpreter's environment (the venv need not be activated), else from PATH."""
    return str(DBT_BESIDE_PYTHON) if DBT_BESIDE_PYTHON.exists() else (shutil.which("dbt") or "dbt")


class WarehouseDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two costs every `dbt` invocation paid for nothing here (about 3 s
    of each run's dbt step, a few percent of an SF10 daily run):

    - it asked the executable for its version by running `dbt --version`, a second dbt start (1.6-1.9 s)
      that also looks up the latest release on PyPI. When the executable is the one installed beside
      this interpreter, its version is the installed dbt-core package's;
    - it built a dbt adapter in the step's own process (about 1 s), which dagster-dbt only uses to
      fetch row counts or column metadata after the models ran (`fetch_row_counts()`,
      `fetch_column_metadata()`), and this project asks for neither.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == DBT_BESIDE_PYTHON:
            return version.parse(importlib.metadata.version("dbt-core"))
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def dbt_cli_resource(project: DbtProject) -> DbtCliResource:
    return WarehouseDbtCliResource(project_dir=project, dbt_executable=dbt_executable())


def dbt_project(target_dir: Path) -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target_path=target_dir)


def _sources_newer_than(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    watched = ["models", "macros", "tests", "dbt_project.yml", "profiles.yml"]
    for name in watched:
        path = DBT_PROJECT_DIR / name
        files = [path] if path.is_file() else path.rglob("*")
        if any(f.is_file() and f.stat().st_mtime > built for f in files):
            return True
    return False


def profile_environment(settings: DuckDBSettings) -> dict[str, str]:
    """dbt's profile reads the warehouse settings from the environment: these are the values. (Not the
    spill folder: dbt spills beside the warehouse file, see profiles.yml.)"""
    return {"FUNNEL_WAREHOUSE_PATH": str(settings.path), "FUNNEL_DUCKDB_MEMORY_LIMIT": settings.memory_limit}


def prepared_dbt_project(target_dir: Path, settings: DuckDBSettings) -> DbtProject:
    """The dbt project with an up-to-date manifest (`dbt parse` when a model changed since the last one).

    Parsed with the profile the runs will use (`settings`, the warehouse resource's), so the
    `partial_parse.msgpack` it leaves is one every `dbt build` can start from: dbt throws it away and
    parses everything again when the profile's values differ.
    """
    project = dbt_project(target_dir)
    if _sources_newer_than(project.manifest_path):
        with dbt_environment(profile_environment(settings)):
            dbt_cli_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project


@contextmanager
def dbt_environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in os.environ while the block runs (dagster-dbt hands dbt a copy of os.environ)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def invocation_target(project: DbtProject, run_id: str) -> Path:
    """Where one `dbt build` writes its logs, compiled SQL and run_results.json: a folder of its own in the
    environment's dbt target folder (dagster-dbt would use the project's `target/` whatever the
    environment says, and tests must write under their tmp folder)."""
    return Path(project.target_path) / f"warehouse_dbt_models-{run_id[:7]}-{uuid.uuid4().hex[:7]}"


def build_dbt_assets(project: DbtProject, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=WarehouseDbtTranslator(),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
    )
    def warehouse_dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ):
        """Staging, intermediate and mart models; `dbt build`, so dbt data tests report as asset checks."""
        window = context.partition_time_window
        values = {
            **profile_environment(warehouse.settings()),
            **dbt_window_environment(window.start, window.end),
            # Where dagster-dbt looks for the parse's partial_parse.msgpack to copy into the invocation's
            # folder (its default is dbt_project/target, whatever target folder the project was given):
            # without it every build parsed the whole project again. dbt itself gets the invocation's.
            "DBT_TARGET_PATH": str(project.target_path),
        }
        with dbt_environment(values):
            # Unit tests check the models' code on fixed inputs, not the data: CI runs them (tests/dbt,
            # a full `dbt build`); the daily run need not pay for them (about 1 s at SF10).
            invocation = dbt.cli(
                ["build", "--exclude-resource-type", "unit_test"],
                context=context,
                target_path=invocation_target(project, context.run.run_id),
            )
        yield from invocation.stream()

    return warehouse_dbt_models
