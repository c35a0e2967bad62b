"""Time and peak RSS of one Polars mart asset (funnel, client base, action plan) on a built warehouse.

    python -m benchmarks.profile_marts --warehouse <built-copy.duckdb> --asset lead_requirements
    python -m benchmarks.profile_marts --warehouse <built-copy.duckdb> --asset all

Materialises the asset alone (its inputs must already be in the warehouse: run it on a copy of a built
one, never on the pipeline's own file), in this process, and prints one JSON line per asset: seconds of
the materialisation (read, transform, write) and the CPU seconds it used (less sensitive to a shared
machine's load), the process's RSS before it and its peak (`ru_maxrss`,
which is never given back, so profile one asset per process for a clean figure: `--asset all` runs each
in its own subprocess). `--statements` also prints each DuckDB statement the transform runs through
`transforms.sql.Tables`, with its seconds. `--shared-facts` materializes `shared/deal_facts` first in
the same run, as the daily job does, so the mart reads the deal facts instead of computing them; the
line then also gives the facts step's seconds, and `step_seconds` is the mart's step alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ASSETS = [
    "funnel_conversion",
    "funnel_cohorts",
    "lead_requirements",
    "segment_focus",
    "client_segments",
    "segment_scorecard",
    "activity_norms",
    "action_plan",
    "deals_needing_action",
]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_one(
    warehouse: Path,
    asset: str,
    partition: str,
    first_extract: str,
    memory_limit: str = "2GB",
    shared_facts: bool = False,
) -> dict:
    import dagster as dg

    from orchestration.defs.action_plan.assets import build_action_plan_assets
    from orchestration.defs.client_base.assets import build_client_base_assets
    from orchestration.defs.funnel.assets import DEAL_FACTS_KEY, build_funnel_assets
    from orchestration.partitions import daily_extract_partitions
    from orchestration.resources import WarehouseResource

    partitions = daily_extract_partitions(date.fromisoformat(first_extract))
    assets = [
        *build_funnel_assets(partitions),
        *build_client_base_assets(partitions),
        *build_action_plan_assets(partitions),
    ]
    chosen = [a for a in assets if a.key.path[-1] == asset]
    if not chosen:
        raise SystemExit(f"unknown asset {asset!r}; one of {', '.join(ASSETS)}")
    facts = [a for a in assets if a.key == DEAL_FACTS_KEY] if shared_facts else []
    before = _rss_mb()
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    result = dg.materialize(
        [*facts, *chosen],
        resources={
            "warehouse": WarehouseResource(
                duckdb_path=str(warehouse), landing_dir=str(warehouse.parent), memory_limit=memory_limit
            )
        },
        partition_key=partition,
        instance=dg.DagsterInstance.ephemeral(),
    )
    seconds = time.perf_counter() - start
    if not result.success:
        raise SystemExit(f"{asset} failed")
    steps = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    }
    metadata = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    shared = {}
    if facts:
        path = metadata[chosen[0].key].get("deal_facts")  # marts that read no deal facts do not say
        shared = {
            "deal_facts_seconds": round(steps[facts[0].node_def.name], 2),
            "deal_facts": path.value if path is not None else "not read by this mart",
        }
    return {
        "asset": asset,
        "seconds": round(seconds, 2),
        "step_seconds": round(steps[chosen[0].node_def.name], 2),
        **shared,
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 2),
        "rss_before_mb": round(before),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--asset", required=True, help=f"one of {', '.join(ASSETS)}, or all")
    parser.add_argument("--partition", default="2026-11-26", help="the run's as-of date")
    parser.add_argument("--first-extract", default="2026-11-25")
    parser.add_argument(
        "--memory-limit",
        default=os.environ.get("FUNNEL_DUCKDB_MEMORY_LIMIT", "2GB"),
        help="DuckDB's memory limit (default: the pipeline's)",
    )
    parser.add_argument("--statements", action="store_true", help="print each statement's seconds (stderr)")
    parser.add_argument(
        "--shared-facts", action="store_true", help="build shared/deal_facts first in the same run"
    )
    args = parser.parse_args()
    if args.statements:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  %(message)s"))
        statements = logging.getLogger("transforms.sql")
        statements.addHandler(handler)
        statements.setLevel(logging.DEBUG)
    if args.asset != "all":
        limit = args.memory_limit
        print(
            json.dumps(
                profile_one(
                    args.warehouse, args.asset, args.partition, args.first_extract, limit, args.shared_facts
                )
            )
        )
        return
    for asset in ASSETS:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.profile_marts",
                "--warehouse",
                str(args.warehouse),
                "--asset",
                asset,
                "--partition",
                args.partition,
                "--first-extract",
                args.first_extract,
                "--memory-limit",
                args.memory_limit,
                *(["--statements"] if args.statements else []),
                *(["--shared-facts"] if args.shared_facts else []),
            ],
            check=True,
        )


if __name__ == "__main__":
    main()
