"""fct_pipeline_daily two ways on a built warehouse: the dbt model as compiled today (a range join of
every spell against every calendar day) and a running sum of spell entries and exits per day (the
floor's formulation). Times both and checks they give the same rows.

    python -m benchmarks.profile_pipeline_daily --warehouse path/to/funnel.duckdb

The warehouse is copied to a temporary folder first (dbt compile opens it; nothing is written to the
original). Evidence for the change proposed in benchmarks/README.md ("Where the time goes").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO_ROOT = Path(__file__).resolve().parent.parent

# The model's CTEs with open_spells_by_day / open_pipeline replaced by moves / daily_moves / running:
# a spell is open on day D when it was entered by the end of D and not exited by then, so it adds one
# on its entry day and removes one on its exit day.
RUNNING_SUM = """
with
spells as (select * from intermediate.int_deal_stage_spells),
deals as (select * from staging.stg_crm__deals),
clients as (select * from staging.stg_crm__clients),
stages as (select * from staging.stg_crm__stages),
calendar as (
    select cast(range as date) as pipeline_date
    from range(
        (select min(cast(entered_at as date)) from spells),
        (select max(as_of_date) from marts.dim_deals) + interval 1 day,
        interval 1 day
    )
),
deal_segments as (
    select deals.deal_id, deals.business_line, coalesce(clients.segment, 'unknown') as segment,
           deals.amount_reporting
    from deals left join clients on deals.client_id = clients.client_id
),
line_segment_stages as (
    select distinct deal_segments.business_line, deal_segments.segment, stages.stage_id, stages.stage_order
    from deal_segments inner join stages on deal_segments.business_line = stages.pipeline_id
    where not stages.is_terminal and not stages.is_deleted
),
moves as (
    select deal_segments.business_line, deal_segments.segment, spells.stage_id,
           cast(spells.entered_at as date) as move_date, 1 as deal_delta,
           coalesce(deal_segments.amount_reporting, 0) as amount_delta
    from spells inner join deal_segments on spells.deal_id = deal_segments.deal_id
    where not spells.is_terminal
    union all
    select deal_segments.business_line, deal_segments.segment, spells.stage_id,
           cast(spells.exited_at as date), -1, -coalesce(deal_segments.amount_reporting, 0)
    from spells inner join deal_segments on spells.deal_id = deal_segments.deal_id
    where not spells.is_terminal and spells.exited_at is not null
),
daily_moves as (
    select business_line, segment, stage_id, move_date,
           sum(deal_delta) as deal_delta, sum(amount_delta) as amount_delta
    from moves group by business_line, segment, stage_id, move_date
),
running as (
    select
        calendar.pipeline_date, line_segment_stages.business_line, line_segment_stages.segment,
        line_segment_stages.stage_id, line_segment_stages.stage_order,
        sum(coalesce(daily_moves.deal_delta, 0)) over w as open_deal_count,
        sum(coalesce(daily_moves.amount_delta, 0)) over w as open_amount_reporting
    from calendar
    cross join line_segment_stages
    left join daily_moves
        on calendar.pipeline_date = daily_moves.move_date
        and line_segment_stages.business_line = daily_moves.business_line
        and line_segment_stages.segment = daily_moves.segment
        and line_segment_stages.stage_id = daily_moves.stage_id
    window w as (
        partition by line_segment_stages.business_line, line_segment_stages.segment,
                     line_segment_stages.stage_id
        order by calendar.pipeline_date rows between unbounded preceding and current row
    )
)
select pipeline_date, business_line, segment, stage_id, stage_order, open_deal_count,
       cast(open_amount_reporting as decimal(18, 4)) as open_amount_reporting
from running
"""


def compiled_model(warehouse: Path, workdir: Path) -> str:
    """The SQL dbt runs for fct_pipeline_daily today, compiled against `warehouse`."""
    dbt = Path(sys.executable).parent / "dbt"
    env = os.environ | {
        "FUNNEL_WAREHOUSE_PATH": str(warehouse),
        "FUNNEL_DUCKDB_TEMP_DIR": str(workdir / "tmp"),
    }
    subprocess.run(
        [str(dbt if dbt.exists() else "dbt"), "compile", "--select", "fct_pipeline_daily", "--quiet",
         "--target-path", str(workdir / "target")],
        cwd=REPO_ROOT / "dbt_project", env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return next((workdir / "target" / "compiled").rglob("fct_pipeline_daily.sql")).read_text()


def timed(conn: duckdb.DuckDBPyConnection, name: str, sql: str) -> float:
    started = time.perf_counter()
    conn.execute(f"create or replace temp table {name} as {sql}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        copy = work / "funnel.duckdb"
        shutil.copyfile(args.warehouse, copy)
        current = compiled_model(copy, work)
        config = {
            "memory_limit": args.memory_limit,
            "threads": args.threads,
            "temp_directory": str(work / "tmp"),
        }
        with duckdb.connect(str(copy), config=config) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            before = timed(conn, "before", current)
            after = timed(conn, "after", RUNNING_SUM)
            rows = conn.sql("select count(*) from before").fetchall()[0][0]
            differ = conn.sql(
                "select count(*) from ((select * from before except all select * from after) "
                "union all (select * from after except all select * from before))"
            ).fetchall()[0][0]
    print(f"fct_pipeline_daily: {rows:,} rows")
    print(f"range join (today's model): {before:.2f} s")
    print(f"running sum:                {after:.2f} s  ({before / after:.1f}x faster)")
    print(f"rows that differ: {differ}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
