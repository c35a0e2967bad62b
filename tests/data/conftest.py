"""Shared fixtures: small generated worlds, written once per test session under tmp_path_factory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.generator import GeneratorConfig, Manifest, generate  # noqa: E402


def _make(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: object) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp(name)
    return out, generate(GeneratorConfig(**kwargs), out)


@pytest.fixture(scope="session")
def daily_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Daily layout, CSV, default defect rate."""
    return _make(
        tmp_path_factory, "daily_csv", scale=0.01, seed=11, layout="daily", format="csv", defect_rate=0.01
    )


@pytest.fixture(scope="session")
def dump_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Same world as `daily_csv`, dump layout."""
    return _make(
        tmp_path_factory, "dump_csv", scale=0.01, seed=11, layout="dump", format="csv", defect_rate=0.01
    )


@pytest.fixture(scope="session")
def daily_mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Daily layout, mixed formats (CRM as CSV, invoicing and planning as Parquet)."""
    return _make(tmp_path_factory, "daily_mixed", scale=0.01, seed=5, layout="daily", format="mixed")
