"""The dbt models as Dagster assets: keys and groups come from each node's schema and folder."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.defs.dbt.partitions import dbt_vars_for_window
from orchestration.partitions import WRITER_POOL
from orchestration.settings import REPO_ROOT

DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """Models are keyed [schema, name] (`marts/fct_stage_transitions`), grouped by their top folder;
    sources keep [source, table], which are the keys of the ingestion assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props["fqn"][1]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props["fqn"]
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"


def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


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


def prepared_dbt_project() -> DbtProject:
    """The dbt project with an up-to-date manifest (`dbt parse` when a model changed since the last one)."""
    project = dbt_project()
    if _sources_newer_than(project.manifest_path):
        project.preparer.prepare(project)
    return project


def build_dbt_assets(project: DbtProject, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=WarehouseDbtTranslator(),
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
    )
    def warehouse_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        """Staging, intermediate and mart models; `dbt build`, so dbt tests report as asset checks."""
        window = context.partition_time_window
        dbt_vars = dbt_vars_for_window(window.start, window.end)
        yield from dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context).stream()

    return warehouse_dbt_models
