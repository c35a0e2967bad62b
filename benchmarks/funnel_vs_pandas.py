"""funnel_conversion two ways, on the same built warehouse: the Polars transform of `transforms/funnel.py`
and a straightforward pandas implementation of the same definitions. Checks they agree and prints the
time and peak memory of each, each engine measured in its own process so one's memory does not hide the
other's.

    python -m benchmarks.funnel_vs_pandas --warehouse path/to/funnel.duckdb

The warehouse is opened read-only. Time is the computation alone (inputs already in memory); peak RSS is
the whole child process (interpreter, libraries, inputs and computation).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl

ALL = "(all)"
KEYS = ["period_grain", "period_start", "business_line", "segment", "stage_id"]
COMPARED = [
    "reached_count", "reached_strict_count", "advanced_count", "dropped_count", "pending_count",
    "eventually_won_count", "step_conversion", "cumulative_conversion", "conversion_to_won",
    "completed_spell_count", "time_in_stage_median_days", "time_in_stage_mean_days", "open_deal_count",
    "open_amount_reporting", "sla_breach_count", "won_count", "lost_count", "won_amount_reporting",
    "win_rate_count", "win_rate_amount", "average_won_deal_reporting", "sales_cycle_median_days",
]  # fmt: skip
INPUTS = {
    "transitions": "select * from marts.fct_stage_transitions",
    "dim_deals": "select * from marts.dim_deals",
    "dim_clients": "select * from marts.dim_clients",
    "stages": "select * from staging.stg_crm__stages",
    "targets": "select * from staging.stg_planning__targets",
}


# ------------------------------------------------------------------------------------------- pandas


def _period(at: pd.Series, grain: str) -> pd.Series:
    return at.dt.to_period("M" if grain == "month" else "Q").dt.start_time.dt.date


def _by_period(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    parts = []
    for grain in ("month", "quarter"):
        part = frame[frame[column].notna()].copy()
        part["period_grain"], part["period_start"] = grain, _period(part[column], grain)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _segment_total(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame.assign(segment=ALL)], ignore_index=True)


def pandas_funnel_conversion(inputs: dict[str, pd.DataFrame], as_of: date) -> pd.DataFrame:
    tr, stages = inputs["transitions"], inputs["stages"]
    deals = inputs["dim_deals"].merge(
        inputs["dim_clients"][["client_id", "segment"]], on="client_id", how="left"
    )
    deals["segment"] = deals["segment"].fillna("unknown")
    deals["amount_reporting"] = deals["amount_reporting"].astype(float)
    deals = deals[["deal_id", "business_line", "segment", "created_at", "amount_reporting"]]
    end = pd.Timestamp(as_of + timedelta(days=1))
    event_columns = [
        "deal_id", "from_stage_id", "from_stage_days", "to_stage_id", "to_stage_order", "changed_at",
        "transition_number", "is_to_won", "is_to_lost",
    ]  # fmt: skip
    ev = tr.loc[tr["changed_at"] < end, event_columns].sort_values(
        ["deal_id", "changed_at", "transition_number"]
    )

    last = ev.groupby("deal_id").agg(
        entered_funnel_at=("changed_at", "min"), last_at=("changed_at", "last"),
        last_won=("is_to_won", "last"), last_lost=("is_to_lost", "last"),
    ).reset_index()  # fmt: skip
    out = deals.merge(last, on="deal_id")
    out["status"] = np.where(out["last_won"], "won", np.where(out["last_lost"], "lost", "open"))
    out["won_at"] = out["last_at"].where(out["status"] == "won")
    out["lost_at"] = out["last_at"].where(out["status"] == "lost")

    # Shown stages: each pipeline's current open stages and won; for '(all)' those shared at one position.
    cur = stages[~stages["is_deleted"] & ~stages["is_lost"]]
    own = cur.assign(view=cur["pipeline_id"])
    n_pipelines = cur["pipeline_id"].nunique()
    shared_counts = cur[~cur["is_won"]].groupby(["stage_id", "stage_order"]).size()
    shared_keys = shared_counts[shared_counts == n_pipelines].reset_index()[["stage_id", "stage_order"]]
    shared = pd.concat([cur.merge(shared_keys, on=["stage_id", "stage_order"]), cur[cur["is_won"]]])
    shown = pd.concat([own, shared.assign(view=ALL)]).sort_values(["view", "pipeline_id", "stage_order"])
    shown["stage_number"] = shown.groupby(["view", "pipeline_id"]).cumcount() + 1
    shown["next_order"] = shown.groupby(["view", "pipeline_id"])["stage_order"].shift(-1)

    firsts = (
        ev[~ev["is_to_lost"]]
        .groupby(["deal_id", "to_stage_id", "to_stage_order"])["changed_at"]
        .min()
        .reset_index()
    )
    furthest = firsts.groupby("deal_id")["to_stage_order"].max().rename("furthest").reset_index()
    grid = out.merge(shown, left_on="business_line", right_on="pipeline_id")
    pairs = grid[["deal_id", "view", "stage_id", "stage_order"]].merge(
        firsts[["deal_id", "to_stage_order", "changed_at"]], on="deal_id"
    )
    pairs = pairs[pairs["to_stage_order"] >= pairs["stage_order"]]
    reached = (
        pairs.groupby(["deal_id", "view", "stage_id"])["changed_at"].min().rename("reached_at").reset_index()
    )
    strict = out[["deal_id", "business_line"]].merge(
        own[["pipeline_id", "stage_id", "stage_order"]], left_on="business_line", right_on="pipeline_id"
    )
    strict = strict.merge(
        firsts[["deal_id", "to_stage_id", "changed_at"]].rename(columns={"to_stage_id": "stage_id"}),
        on=["deal_id", "stage_id"],
        how="left",
    ).sort_values(["deal_id", "stage_order"])
    prev_max = strict.groupby("deal_id")["changed_at"].cummax().groupby(strict["deal_id"]).shift(1)
    ok = strict["changed_at"].notna() & (prev_max.isna() | (strict["changed_at"] >= prev_max))
    strict["ok"] = ok.astype(int).groupby(strict["deal_id"]).cummin().astype(bool)
    strict["reached_strict_at"] = strict["changed_at"].where(strict["ok"])
    grid = (
        grid.merge(reached, on=["deal_id", "view", "stage_id"], how="left")
        .merge(strict[["deal_id", "stage_id", "reached_strict_at"]], on=["deal_id", "stage_id"], how="left")
        .merge(furthest, on="deal_id", how="left")
    )
    grid["advanced"] = grid["furthest"] >= grid["next_order"]
    grid["dropped"] = ~grid["advanced"] & (grid["status"] == "lost")
    grid["pending"] = ~grid["advanced"] & (grid["status"] == "open")
    grid["won"] = grid["status"] == "won"
    grid = _segment_total(grid.drop(columns="business_line").rename(columns={"view": "business_line"}))
    keys = KEYS
    counts = (
        _by_period(grid, "reached_at")
        .groupby(keys)
        .agg(
            reached_count=("deal_id", "size"), advanced_count=("advanced", "sum"),
            dropped_count=("dropped", "sum"), pending_count=("pending", "sum"),
            eventually_won_count=("won", "sum"),
        )
    )  # fmt: skip
    strict_counts = _by_period(grid, "reached_strict_at").groupby(keys).size().rename("reached_strict_count")

    done = ev[ev["from_stage_id"].notna() & ev["from_stage_days"].notna()].merge(
        out[["deal_id", "business_line", "segment"]], on="deal_id"
    )
    done = done.merge(
        shown[["pipeline_id", "view", "stage_id"]],
        left_on=["business_line", "from_stage_id"],
        right_on=["pipeline_id", "stage_id"],
    )
    done = _segment_total(done.drop(columns="business_line").rename(columns={"view": "business_line"}))
    spells_done = (
        _by_period(done, "changed_at")
        .groupby(keys)["from_stage_days"]
        .agg(completed_spell_count="size", time_in_stage_median_days="median", time_in_stage_mean_days="mean")
    )

    # Calendar and stage fill at each period's end.
    first = out["entered_funnel_at"].min()
    calendar = []
    for grain, freq in (("month", "MS"), ("quarter", "QS")):
        start = _period(pd.Series([first]), grain).iloc[0]
        for p in pd.date_range(start, as_of, freq=freq):
            p_end = (p + (pd.offsets.MonthEnd(1) if grain == "month" else pd.offsets.QuarterEnd(1))).date()
            calendar.append((grain, p.date(), p_end, min(p_end, as_of)))
    calendar = pd.DataFrame(calendar, columns=["period_grain", "period_start", "period_end", "fill_date"])
    spells = ev.copy()
    spells["exited_at"] = spells.groupby("deal_id")["changed_at"].shift(-1)
    spells = spells[~spells["is_to_won"] & ~spells["is_to_lost"]]
    spells = spells.merge(
        out[["deal_id", "business_line", "segment", "amount_reporting"]], on="deal_id"
    ).merge(
        shown[["pipeline_id", "view", "stage_id", "sla_days"]],
        left_on=["business_line", "to_stage_id"],
        right_on=["pipeline_id", "stage_id"],
    )
    fills = []
    for row in calendar.itertuples():
        until = pd.Timestamp(row.fill_date + timedelta(days=1))
        open_ = spells[
            (spells["changed_at"] < until) & (spells["exited_at"].isna() | (spells["exited_at"] >= until))
        ]
        age = (pd.Timestamp(row.fill_date) - open_["changed_at"].dt.normalize()).dt.days
        fills.append(
            open_.assign(
                period_grain=row.period_grain, period_start=row.period_start, breached=age > open_["sla_days"]
            )
        )
    fill = _segment_total(
        pd.concat(fills).drop(columns="business_line").rename(columns={"view": "business_line"})
    )
    fill = fill.groupby(keys).agg(
        open_deal_count=("deal_id", "size"), open_amount_reporting=("amount_reporting", "sum"),
        sla_breach_count=("breached", "sum"),
    )  # fmt: skip

    closed = out[out["status"] != "open"].copy()
    closed["closed_at"] = closed["won_at"].fillna(closed["lost_at"])
    closed["is_won"] = closed["status"] == "won"
    closed["won_amount"] = closed["amount_reporting"].where(closed["is_won"])
    closed["lost_amount"] = closed["amount_reporting"].where(~closed["is_won"])
    closed["cycle"] = ((closed["won_at"] - closed["created_at"]).dt.total_seconds() / 86400).where(
        closed["is_won"]
    )
    closed = _segment_total(pd.concat([closed, closed.assign(business_line=ALL)]))
    deal_figures = (
        _by_period(closed, "closed_at")
        .groupby(["period_grain", "period_start", "business_line", "segment"])
        .agg(
            won_count=("is_won", "sum"), lost_count=("is_won", lambda s: int((~s).sum())),
            won_amount_reporting=("won_amount", "sum"), lost_amount_reporting=("lost_amount", "sum"),
            average_won_deal_reporting=("won_amount", "mean"), sales_cycle_median_days=("cycle", "median"),
        )
    )  # fmt: skip

    universe = pd.concat(
        [deals[["business_line", "segment"]], inputs["targets"][["business_line", "segment"]]]
    )
    universe = _segment_total(pd.concat([universe, universe.assign(business_line=ALL)])).drop_duplicates()
    stage_rows = shown.rename(columns={"view": "business_line"})[
        ["business_line", "stage_id", "stage_number", "is_won"]
    ].drop_duplicates(["business_line", "stage_id"])
    table = calendar.merge(universe, how="cross").merge(stage_rows, on="business_line")
    table = (
        table.merge(counts.reset_index(), on=keys, how="left")
        .merge(strict_counts.reset_index(), on=keys, how="left")
        .merge(spells_done.reset_index(), on=keys, how="left")
        .merge(fill.reset_index(), on=keys, how="left")
        .merge(deal_figures.reset_index(), on=keys[:-1], how="left")
    )
    for c in ["reached_count", "reached_strict_count", "advanced_count", "dropped_count", "pending_count",
              "eventually_won_count", "completed_spell_count", "won_count", "lost_count"]:  # fmt: skip
        table[c] = table[c].fillna(0)
    for c in ["open_deal_count", "open_amount_reporting", "sla_breach_count"]:
        table[c] = table[c].fillna(0).where(~table["is_won"])
    for c in ["won_amount_reporting", "lost_amount_reporting"]:
        table[c] = table[c].fillna(0.0)
    decided = table["advanced_count"] + table["dropped_count"]
    table["step_conversion"] = (table["advanced_count"] / decided.where(decided > 0)).where(~table["is_won"])
    for c in ["advanced_count", "dropped_count", "pending_count"]:
        table[c] = table[c].where(~table["is_won"])
    table = table.sort_values(["period_grain", "period_start", "business_line", "segment", "stage_number"])
    step = table["step_conversion"].where(~table["is_won"], 1.0)
    group = [table[k] for k in ["period_grain", "period_start", "business_line", "segment"]]
    missing = step.isna().astype(int)
    known = step.fillna(1.0)
    rev = known[::-1].groupby([g[::-1] for g in group]).cumprod()[::-1]
    missing_after = missing[::-1].groupby([g[::-1] for g in group]).cumsum()[::-1]
    table["conversion_to_won"] = rev.where(missing_after == 0)
    shifted = known.groupby(group).shift(1).fillna(1.0)
    missing_before = missing.groupby(group).shift(1).fillna(0).groupby(group).cumsum()
    table["cumulative_conversion"] = shifted.groupby(group).cumprod().where(missing_before == 0)
    won_lost = table["won_count"] + table["lost_count"]
    table["win_rate_count"] = table["won_count"] / won_lost.where(won_lost > 0)
    amounts = table["won_amount_reporting"] + table["lost_amount_reporting"]
    table["win_rate_amount"] = table["won_amount_reporting"] / amounts.where(amounts > 0)
    return table[[*KEYS, *COMPARED]]


# -------------------------------------------------------------------------------------------- runner


def _as_of(conn: duckdb.DuckDBPyConnection) -> date:
    return conn.sql("select max(as_of_date) from marts.dim_deals").fetchall()[0][0]


def child(engine: str, warehouse: str, out: str) -> None:
    with duckdb.connect(warehouse, read_only=True) as conn:
        as_of = _as_of(conn)
        if engine == "polars":
            from transforms.funnel import funnel_conversion

            frames = {name: conn.sql(sql).pl() for name, sql in INPUTS.items()}
            started = time.perf_counter()
            result = funnel_conversion(**{k: v.lazy() for k, v in frames.items()}, as_of=as_of).collect()
            seconds = time.perf_counter() - started
        else:
            frames = {name: conn.sql(sql).df() for name, sql in INPUTS.items()}
            started = time.perf_counter()
            result = pl.from_pandas(pandas_funnel_conversion(frames, as_of))
            seconds = time.perf_counter() - started
    result.select(KEYS + COMPARED).write_parquet(out)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"engine": engine, "seconds": seconds, "peak_rss_mb": peak_mb, "rows": result.height}))


def compare(polars_out: str, pandas_out: str) -> list[str]:
    a = pl.read_parquet(polars_out).with_columns(pl.col(COMPARED).cast(pl.Float64))
    b = pl.read_parquet(pandas_out).with_columns(
        pl.col(COMPARED).cast(pl.Float64), pl.col("period_start").cast(pl.Date)
    )
    problems = []
    if a.height != b.height:
        problems.append(f"row counts differ: polars {a.height}, pandas {b.height}")
    joined = a.join(b, on=KEYS, how="full", suffix="_pandas", coalesce=True, nulls_equal=True)
    for column in COMPARED:
        x, y = joined[column], joined[f"{column}_pandas"]
        same_null = x.is_null() == y.is_null()
        close = ((x - y).abs() <= 1e-6 * (1 + y.abs())).fill_null(True)
        bad = joined.filter(~(same_null & close))
        if bad.height:
            problems.append(
                f"{column}: {bad.height} rows differ, "
                f"e.g. {bad.select(*KEYS, column, column + '_pandas').row(0)}"
            )
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warehouse", required=True, help="a built warehouse (DuckDB file), opened read-only"
    )
    parser.add_argument("--engine", choices=["polars", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        child(args.engine, args.warehouse, args.out)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for engine in ("polars", "pandas"):
            out = str(Path(tmp) / f"{engine}.parquet")
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.funnel_vs_pandas", "--warehouse", args.warehouse,
                 "--engine", engine, "--out", out],
                check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
            runs[engine] = json.loads(done.stdout.strip().splitlines()[-1]) | {"out": out}
        problems = compare(runs["polars"]["out"], runs["pandas"]["out"])
    p, q = runs["polars"], runs["pandas"]
    print(f"warehouse: {args.warehouse}  rows: {p['rows']}  figures compared: {len(COMPARED)}")
    print(f"polars: {p['seconds']:.2f} s, peak RSS {p['peak_rss_mb']:.0f} MB")
    print(f"pandas: {q['seconds']:.2f} s, peak RSS {q['peak_rss_mb']:.0f} MB")
    print(
        f"pandas / polars: time {q['seconds'] / p['seconds']:.1f}x, "
        f"peak RSS {q['peak_rss_mb'] / p['peak_rss_mb']:.2f}x"
    )
    print("agree: yes" if not problems else "agree: NO\n  " + "\n  ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
