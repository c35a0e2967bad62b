"""Warehouses built once per test session through the real Dagster job, shared by the tests that read
marts: the embedded sample, and a larger generated data set whose ground truth is known."""

from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import MAIN_JOB, build_definitions
from orchestration.settings import REPO_ROOT, Environment, environment

SAMPLE = REPO_ROOT / "data" / "sample"


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def build_warehouse(root: Path, landing: Path) -> Environment:
    """Run the main job over every extract folder of `landing` into a warehouse under `root`."""
    dates = sorted(p.name for p in landing.iterdir() if p.is_dir())
    env = replace(
        environment(),
        warehouse_path=root / "funnel.duckdb",
        published_path=root / "published" / "funnel.duckdb",
        landing_dir=landing,
        first_extract_date=date.fromisoformat(dates[0]),
        memory_limit="2GB",
        temp_directory=root / "tmp",
        dbt_target_dir=root / "dbt_target",
    )
    job = build_definitions(env).resolve_job_def(MAIN_JOB)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=range_tags(dates[0], dates[-1])
    )
    assert result.success
    return env


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory) -> Environment:
    """The embedded sample (data/sample), built as `make run` builds it."""
    return build_warehouse(tmp_path_factory.mktemp("sample_warehouse"), SAMPLE / "extracts")


@pytest.fixture(scope="session")
def generated_warehouse(tmp_path_factory) -> tuple[Environment, dict]:
    """Scale 0.1 (about 10k deals over three years), crisis on, defects on; returns (env, manifest)."""
    import json

    from data.generator import GeneratorConfig, generate

    root = tmp_path_factory.mktemp("generated_warehouse")
    generate(GeneratorConfig(scale=0.1, seed=3, format="parquet", daily_days=3), root / "landing")
    manifest = json.loads((root / "landing" / "manifest.json").read_text())
    return build_warehouse(root, root / "landing" / "extracts"), manifest
