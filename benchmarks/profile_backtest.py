"""Where the first-time forecast backtest spends its time, on a built warehouse (opened read-only).

    python -m benchmarks.profile_backtest --warehouse <funnel.duckdb> --partition 2026-11-25 [--origins 3]

Runs the parts of `forecast_backtest` one after another, in this process, and prints one JSON line per
part: its seconds, and the process's RSS after it and peak so far (MB). The parts: reading the spells
and the amount history, the origins' fingerprints (computed in the warehouse, as the asset does),
reading the won spells alone (all a day that recomputes no origin reads), preparing the as-of amount
lookup, then per origin the spells valued at the amounts known at it (`AmountsAtOrigins.spells_at`) and
the forecast on them (model, scoring, simulation: `backtest_forecast_at`), and last the actuals.
`--origins N` computes only N origins spread over the backtest's (first, last, and evenly between) to
keep a run at SF100 short; the per-origin figures are what a full run repeats for each of its origins.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date
from pathlib import Path

from benchmarks.profile_marts import _rss_mb


def spread(items: list, count: int | None) -> list:
    """`count` items of `items`, the first and the last among them and the others evenly between."""
    if count is None or count >= len(items):
        return list(items)
    if count <= 1:
        return items[:count]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--partition", required=True, help="the run's as-of date")
    parser.add_argument("--origins", type=int, help="compute only this many origins (default: all)")
    parser.add_argument("--memory-limit", default="2GB", help="DuckDB's memory limit while reading")
    args = parser.parse_args()

    import polars as pl

    from ingestion.warehouse import DuckDBSettings, connect
    from orchestration.defs.forecast.assets import (
        BacktestConfig,
        load_funnel_spells,
        read_amount_history,
        warehouse_fingerprints,
    )
    from transforms.forecast_backtest import (
        AmountsAtOrigins,
        backtest_actuals,
        backtest_forecast_at,
        backtest_origins,
    )

    clock = [time.perf_counter()]

    def report(part: str, **extra) -> None:
        now = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        line = {"part": part, "seconds": round(now - clock[0], 2), "rss_mb": round(_rss_mb())}
        line["peak_rss_mb"] = peak
        print(json.dumps(line | extra), flush=True)
        clock[0] = time.perf_counter()

    config = BacktestConfig()
    settings = config.settings()
    with connect(DuckDBSettings(path=args.warehouse, memory_limit=args.memory_limit), read_only=True) as conn:
        spells, stages = load_funnel_spells(conn)
        frame = spells.collect()
        report("read spells", rows=frame.height)
        amounts = read_amount_history(conn)
        report("read amount history", rows=amounts.height)
        first_event_at = frame.select(pl.col("entered_at").min()).item()
        origins = backtest_origins(
            first_event_at, date.fromisoformat(args.partition), config.warmup_months, 3
        )
        warehouse_fingerprints(conn, stages, origins, settings)
        report("fingerprints (in the warehouse)", origins=len(origins))
        won = load_funnel_spells(conn, won_only=True)[0].collect()
        report("read won spells (a day that recomputes no origin)", rows=won.height)
    valued = AmountsAtOrigins(frame, amounts)
    report("prepare the amount lookup")
    for origin in spread(origins, args.origins):
        at_origin = valued.spells_at(origin)
        report("amounts at origin", origin=str(origin.date()))
        backtest_forecast_at(at_origin.lazy(), stages, origin, settings)
        report("forecast at origin", origin=str(origin.date()))
    backtest_actuals(frame.lazy(), origins)
    report("actuals")


if __name__ == "__main__":
    main()
