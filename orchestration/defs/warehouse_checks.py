"""Shared shape of the asset checks that read a mart back from the warehouse."""

from collections.abc import Callable

import dagster as dg
import polars as pl

from orchestration.partitions import WRITER_POOL
from orchestration.resources import WarehouseResource


def examples_metadata(frame: pl.DataFrame, limit: int = 5) -> dg.MetadataValue:
    """The first failing rows, JSON-safe, for the check's metadata in the UI."""
    return dg.MetadataValue.json(
        [
            {k: (v if isinstance(v, int | float | bool) or v is None else str(v)) for k, v in row.items()}
            for row in frame.head(limit).to_dicts()
        ]
    )


def warehouse_check(
    key: dg.AssetKey,
    name: str,
    description: str,
    partitions_def: dg.PartitionsDefinition,
    evaluate: Callable[..., dg.AssetCheckResult],
    extra_deps: list[dg.AssetKey] | None = None,
) -> dg.AssetChecksDefinition:
    """A blocking, partitioned check in the writer pool that hands `evaluate` an open connection."""

    @dg.asset_check(
        asset=key,
        name=name,
        description=description,
        blocking=True,
        partitions_def=partitions_def,
        pool=WRITER_POOL,
        additional_deps=extra_deps or [],
    )
    def _evaluate(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> dg.AssetCheckResult:
        with warehouse.connect() as conn:
            return evaluate(context, conn)

    return _evaluate
