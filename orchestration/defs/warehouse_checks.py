"""Shared shape of the asset checks that read a mart back from the warehouse, and the steps that run them.

Each step of a run is a process of its own (about 0.4 s to start), which is more than most of these checks
take. So an area's checks are declared one by one (`warehouse_check`) and evaluated together, one step per
checked asset (or per step that writes several), on one connection (`check_step`). Not more than that: a
step that checked several independent assets would wait for all of them, so one failing would leave the
others unchecked and hold back everything downstream of them. The step is subsettable: one check can still
be run alone from the UI or a selection.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class WarehouseCheck:
    """One check of a mart: its spec, and how to evaluate it on an open warehouse connection."""

    spec: dg.AssetCheckSpec
    evaluate: Callable[..., dg.AssetCheckResult]  # (context, connection) -> result


def warehouse_check(
    key: dg.AssetKey,
    name: str,
    description: str,
    partitions_def: dg.PartitionsDefinition,
    evaluate: Callable[..., dg.AssetCheckResult],
    extra_deps: list[dg.AssetKey] | None = None,
    blocking: bool = True,
) -> WarehouseCheck:
    """A partitioned check (blocking unless told) that `evaluate`s on an open connection."""
    spec = dg.AssetCheckSpec(
        name=name,
        asset=key,
        description=description,
        blocking=blocking,
        partitions_def=partitions_def,
        additional_deps=extra_deps or [],
    )
    return WarehouseCheck(spec, evaluate)


def check_step(name: str, checks: Sequence[WarehouseCheck]) -> dg.AssetChecksDefinition:
    """`checks` evaluated in one step (in the writer pool), in the order given, on one connection: the
    checks of one asset, or of the assets one step writes (see the module's docstring)."""

    @dg.multi_asset_check(
        name=name, specs=[check.spec for check in checks], can_subset=True, pool=WRITER_POOL
    )
    def _evaluate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        selected = context.selected_asset_check_keys
        with warehouse.connect() as conn:
            for check in checks:
                if check.spec.key in selected:
                    result = check.evaluate(context, conn)
                    yield result._replace(asset_key=check.spec.asset_key, check_name=check.spec.name)

    return _evaluate


def check_steps_per_asset(checks: Sequence[WarehouseCheck]) -> list[dg.AssetChecksDefinition]:
    """One `check_step` per checked asset, named `<asset>_checks`."""
    assets = list(dict.fromkeys(check.spec.asset_key for check in checks))
    return [
        check_step(f"{key.path[-1]}_checks", [check for check in checks if check.spec.asset_key == key])
        for key in assets
    ]
