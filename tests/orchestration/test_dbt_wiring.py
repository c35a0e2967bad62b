from datetime import datetime

import pytest

from orchestration.defs.dbt.partitions import dbt_vars_for_window


def test_a_range_of_days_becomes_one_inclusive_window():
    assert dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 27)) == {
        "min_date": "2026-11-12",
        "max_date": "2026-11-26",
    }


def test_one_day_partition():
    assert dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 13)) == {
        "min_date": "2026-11-12",
        "max_date": "2026-11-12",
    }


def test_an_empty_window_is_an_error():
    with pytest.raises(ValueError, match="empty partition window"):
        dbt_vars_for_window(datetime(2026, 11, 12), datetime(2026, 11, 12))


def test_dbt_sources_are_the_ingestion_assets_and_marts_depend_on_them(tmp_path):
    from dataclasses import replace

    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.settings import environment

    defs = build_definitions(replace(environment(), dbt_target_dir=tmp_path / "target"))
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert dg.AssetKey(["raw", "deals"]) in keys
    assert dg.AssetKey(["marts", "fct_stage_transitions"]) in keys
    # Each raw table the staging model reads is an ingestion asset, not a dangling external key.
    parents = graph.get(dg.AssetKey(["staging", "stg_crm__deals"])).parent_keys
    assert dg.AssetKey(["raw", "deals"]) in parents
    assert dg.AssetKey(["quality", "integrity_issues"]) in parents
    assert all(graph.get(key).is_materializable for key in keys)


def test_the_dbt_resource_neither_starts_dbt_for_its_version_nor_builds_an_adapter(tmp_path, monkeypatch):
    import importlib.metadata
    import sys
    from pathlib import Path

    import dagster_dbt.core.resource
    from packaging import version

    from orchestration.defs.dbt.assets import WarehouseDbtCliResource, dbt_cli_resource, dbt_project

    started = []

    def check_output(args, *rest, **kwargs):
        started.append(list(args))
        return b"Core:\n  - installed: 1.9.0\n"

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", check_output)
    project = dbt_project(tmp_path / "target")
    resource = dbt_cli_resource(project)
    assert Path(resource.dbt_executable) == Path(sys.executable).parent / "dbt"
    assert resource._cli_version == version.parse(importlib.metadata.version("dbt-core"))
    assert resource._initialize_dbt_core_adapter(["build"]) is None
    assert started == []  # no `dbt --version`
    # Another executable may be another dbt: that one is asked.
    elsewhere = tmp_path / "bin" / "dbt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("#!/bin/sh\n")
    elsewhere.chmod(0o755)
    other = WarehouseDbtCliResource(project_dir=project, dbt_executable=str(elsewhere))
    assert other._cli_version == version.parse("1.9.0")
    assert started == [[str(elsewhere), "--version"]]
