"""Fixtures of the dbt tests: one warehouse built from both extracts, shared by the module."""

from __future__ import annotations

import dbt_raw_extracts
import pytest
from dbt_warehouse import Warehouse, new_warehouse


@pytest.fixture(scope="module")
def built_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """Both extracts loaded, then one full `dbt build` (models, data tests, unit tests)."""
    warehouse = new_warehouse(
        tmp_path_factory.mktemp("built"),
        [dbt_raw_extracts.FIRST_EXTRACT, dbt_raw_extracts.SECOND_EXTRACT],
    )
    warehouse.dbt("build")
    return warehouse
