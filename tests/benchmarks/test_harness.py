"""The benchmark harness's pure helpers: step timings, stage totals, parsing, comparisons, the report.
No timing is asserted anywhere: timings belong in `make bench`."""

import sys

import duckdb
import pytest

from benchmarks.floor import mart_checksums, statements
from benchmarks.harness import (
    compare_checksums,
    compare_marts,
    figures,
    measure,
    own_high_water_bytes,
    parse_pandas_output,
    peak_by_step,
    results_markdown,
    stage_seconds,
    step_durations,
)


def event(step: str, kind: str, at: float) -> dict:
    return {"step": step, "event": kind, "timestamp": at}


def test_step_durations_pair_start_with_its_end_whatever_the_order():
    events = [
        event("raw__deals", "STEP_SUCCESS", 102.5),
        event("raw__deals", "STEP_START", 100.0),
        event("dbt", "STEP_START", 103.0),
        event("dbt", "STEP_FAILURE", 110.0),
        event("funnel", "STEP_START", 111.0),  # never ended: left out
    ]
    # raw__deals 102.5 - 100 = 2.5; dbt 110 - 103 = 7
    assert step_durations(events) == pytest.approx({"raw__deals": 2.5, "dbt": 7.0})


def test_step_durations_add_up_retried_attempts():
    events = [
        event("a", "STEP_START", 0.0),
        event("a", "STEP_FAILURE", 1.0),
        event("a", "STEP_START", 2.0),
        event("a", "STEP_SUCCESS", 5.0),
    ]
    # 1 + 3
    assert step_durations(events) == pytest.approx({"a": 4.0})


def test_stage_seconds_sum_per_group_in_pipeline_order():
    durations = {"raw__deals": 2.0, "raw__clients": 1.0, "warehouse_dbt_models": 7.0, "published__report": 0.5,
                 "marts__funnel_conversion": 3.0, "mystery": 0.25}  # fmt: skip
    groups = {"raw__deals": "ingestion", "raw__clients": "ingestion", "warehouse_dbt_models": "dbt",
              "published__report": "publish", "marts__funnel_conversion": "funnel"}  # fmt: skip
    stages = stage_seconds(durations, groups)
    assert stages == pytest.approx(
        {"ingestion": 3.0, "dbt": 7.0, "funnel": 3.0, "publish": 0.5, "other": 0.25}
    )
    assert list(stages) == ["ingestion", "dbt", "funnel", "publish", "other"]


def test_parse_pandas_output_reads_both_engines_and_their_ratios():
    text = (
        "warehouse: /x/funnel.duckdb  rows: 5000  figures compared: 22\n"
        "polars: 0.50 s, peak RSS 400 MB\n"
        "pandas: 2.00 s, peak RSS 600 MB\n"
        "pandas / polars: time 4.0x, peak RSS 1.50x\n"
        "agree: yes\n"
    )
    parsed = parse_pandas_output(text)
    assert parsed["polars"] == {"seconds": 0.5, "peak_rss_mb": 400.0}
    assert parsed["time_ratio"] == pytest.approx(4.0)  # 2.00 / 0.50
    assert parsed["rss_ratio"] == pytest.approx(1.5)  # 600 / 400
    assert parsed["agree"] is True


def test_parse_pandas_output_of_a_crash_has_no_ratio():
    parsed = parse_pandas_output("Traceback (most recent call last):\n  ...\n")
    assert parsed == {"agree": None}


def test_compare_marts_gives_floor_minus_pipeline():
    rows = compare_marts({"dim_deals": 100, "dim_clients": 10}, {"dim_deals": 98, "dim_clients": 10})
    assert rows["dim_deals"] == {"pipeline": 100, "floor": 98, "difference": -2}
    assert rows["dim_clients"]["difference"] == 0
    assert rows["fct_pipeline_daily"]["difference"] is None  # missing on both sides


def test_compare_checksums_reports_only_real_differences():
    pipeline = {"dim_deals": {"amount_reporting": 1000.0, "skip_count": 5.0, "age_days": None}}
    floor = {"dim_deals": {"amount_reporting": 1000.0000001, "skip_count": 6.0, "age_days": None}}
    assert compare_checksums(pipeline, floor) == ["dim_deals.skip_count: pipeline 5.0, floor 6.0"]


def test_checksums_of_a_build_that_failed_before_a_mart_report_it_missing():
    conn = duckdb.connect()
    conn.execute("create schema marts")
    conn.execute("create table marts.dim_clients as select 10 as employees union all select 5")
    sums = mart_checksums(conn)
    assert sums == {"dim_clients": {"employees": 15.0}}
    floor = {"dim_clients": {"employees": 15.0}, "fct_client_turnover": {"invoice_count": 3.0}}
    assert compare_checksums(sums, floor) == ["fct_client_turnover.invoice_count: pipeline None, floor 3.0"]


def run_summary(run_seconds: float, stages: dict[str, float], rss: float) -> dict:
    return {
        "success": True, "failure": None, "wall_seconds": run_seconds + 10, "definitions_seconds": 3.0,
        "run_seconds": run_seconds, "stages": stages, "orchestration_seconds": 1.0,
        "slowest_steps": {"warehouse_dbt_models": stages.get("dbt", 0.0)}, "rows_loaded": 1000,
        "raw_rows": 1000, "mart_rows": 500, "dbt_mart_rows": {}, "ingest_rows_per_second": 100.0,
        "mart_rows_per_second": 50.0, "peak_rss_mb": rss, "tree_rss_sampled_mb": rss / 2,
        "warehouse_mb": 1.0, "load_before": (0.1, 0.1, 0.1), "load_after": (0.2, 0.2, 0.2), "log": "x.log",
    }  # fmt: skip


@pytest.fixture
def results() -> dict:
    out = {
        "scale": "1", "format": "parquet", "started_at": "20260101T000000Z",
        "machine": {"cpus": 2, "memory_gb": 24.0}, "memory_limit": "4GB", "threads": 2,
        "load_at_start": (0.5, 0.4, 0.3),
        "full_build": run_summary(60.0, {"ingestion": 10.0, "dbt": 20.0, "funnel": 25.0}, 900.0),
        "incremental": run_summary(12.0, {"ingestion": 1.0, "dbt": 6.0, "funnel": 4.0}, 800.0),
        "floor": {"seconds": 15.0, "peak_rss_mb": 500.0, "statements": {"marts.dim_deals": 2.0}},
        "floor_with_new_day": {"seconds": 16.0},
        "pandas": {"time_ratio": 3.0, "polars": {"peak_rss_mb": 300.0}, "pandas": {"peak_rss_mb": 450.0}},
        "mart_rows": compare_marts({"dim_deals": 100}, {"dim_deals": 100}),
        "checksum_differences": [],
    }  # fmt: skip
    out["figures"] = figures(out)
    return out


def test_figures_are_the_ratios_of_the_targets(results):
    fig = results["figures"]
    assert fig["full_vs_floor"] == pytest.approx(4.0)  # 60 / 15
    assert fig["ingestion_dbt_vs_floor"] == pytest.approx(2.0)  # (10 + 20) / 15
    assert fig["dbt_vs_floor"] == pytest.approx(20 / 15)
    assert fig["incremental_share"] == pytest.approx(0.2)  # 12 / 60
    assert fig["incremental_vs_floor_recompute"] == pytest.approx(0.75)  # 12 / 16
    assert fig["peak_rss_mb"] == 900.0  # max(largest process 900, sampled tree 450)


def test_results_markdown_has_a_row_per_stage_and_the_ratios(results):
    text = results_markdown(results)
    assert "| ingestion | 10.0 | 1.0 |" in text
    assert "| funnel | 25.0 | 4.0 |" in text
    assert "| full build run / floor | 4.00x | <= 1.5x (SF10) |" in text
    assert "| dim_deals | 100 | 100 | 0 |" in text
    assert "A run failed" not in text
    # The slowest steps of both runs side by side (the daily run is where the 10 % target is read).
    assert "| warehouse_dbt_models | 20.0 | warehouse_dbt_models | 6.0 |" in text


def test_results_markdown_says_when_a_run_failed(results):
    results["full_build"] |= {"success": False, "failure": "warehouse_dbt_models: dbt test failed"}
    text = results_markdown(results)
    assert "**A run failed**: warehouse_dbt_models: dbt test failed" in text


def test_floor_statements_split_and_swap_readers_for_csv():
    sql = (
        "-- a comment; not a statement\n"
        "create or replace temp view src_deals as\n"
        "select file_row_number + 1 as _source_row\n"
        "from read_parquet(getvariable('landing') || '/*/deals.parquet', filename = true, "
        "file_row_number = true, union_by_name = true);\n"
        "select 1;\n"
    )
    parquet = statements(sql)
    assert len(parquet) == 2 and parquet[1] == "select 1"
    csv = statements(sql, "csv")[0]
    assert "read_csv(getvariable('landing') || '/*/deals.csv'" in csv
    assert "0 as _source_row" in csv and "read_parquet" not in csv


def test_peak_by_step_takes_the_samples_inside_each_step():
    events = [
        event("a", "STEP_START", 10.0),
        event("a", "STEP_SUCCESS", 20.0),
        event("b", "STEP_START", 20.5),
        event("b", "STEP_SUCCESS", 30.0),
    ]
    mb = 2**20
    samples = [(9.0, 5000 * mb), (12.0, 100 * mb), (19.0, 300 * mb), (25.0, 200 * mb), (31.0, 900 * mb)]
    # a: samples at 12 and 19 -> peak 300, rise 300 - 5000 (the sample at 9, before it) = -4700;
    # b: sample at 25 -> peak 200, rise 200 - 300 (the sample at 19) = -100; 31 is after every step.
    assert peak_by_step(events, samples) == {"a": (300.0, -4700.0), "b": (200.0, -100.0)}
    rising = [(9.0, 100 * mb), (15.0, 700 * mb)]
    assert peak_by_step(events[:2], rising) == {"a": (700.0, 600.0)}  # 700 - 100


ALLOCATE = (
    "import sys; block = bytearray(int(sys.argv[1]) * 2**20); block[:: 4096] = b'x' * len(block[:: 4096])"
)


def test_a_small_child_of_a_large_harness_is_reported_small(tmp_path):
    """wait4's ru_maxrss of a child starts from the parent's peak RSS: the harness must not report its own
    memory (it once reported 6.7 GB for every run after generating SF10 in-process)."""
    held = bytearray(600 * 2**20)
    held[::4096] = b"x" * len(held[::4096])  # touch every page: 600 MB resident in this process
    small = measure([sys.executable, "-c", ALLOCATE, "50"], tmp_path / "small.log")
    assert small.returncode == 0
    assert small.peak_rss_mb < 400, small.peak_rss_mb
    del held


def test_a_child_larger_than_the_harness_is_reported_at_its_peak(tmp_path):
    size_mb = own_high_water_bytes() // 2**20 + 300  # above anything this process held so far
    big = measure([sys.executable, "-c", ALLOCATE, str(size_mb)], tmp_path / "big.log")
    assert big.returncode == 0
    assert size_mb <= big.peak_rss_mb < size_mb + 200, (size_mb, big.peak_rss_mb)


HOLD_FILE = """
import os, sys, time
path, size_mb = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as handle:
    for _ in range(size_mb):
        handle.write(os.urandom(2**20))
    handle.flush()
    os.fsync(handle.fileno())
time.sleep(1.0)
os.remove(path)
"""


def test_measure_reports_the_disk_a_command_took_at_most(tmp_path):
    """A spill that comes and goes is what ran SF100 out of disk: the peak must be seen after the file
    is gone. The bound is loose (anything else writing to the same disk counts too)."""
    run = measure(
        [sys.executable, "-c", HOLD_FILE, str(tmp_path / "spill.bin"), "64"],
        tmp_path / "disk.log",
        disk=tmp_path,
    )
    assert run.returncode == 0, (tmp_path / "disk.log").read_text()
    assert not (tmp_path / "spill.bin").exists()
    events = [event("spill", "STEP_START", run.disk_samples[0][0]), event("spill", "STEP_SUCCESS", 1e12)]
    disk = run.disk_summary(events)
    assert 48 <= disk["taken_peak_gb"] * 1024 < 1024, disk
    assert disk["free_lowest_gb"] == pytest.approx(disk["free_start_gb"] - disk["taken_peak_gb"])
    peak, _ = disk["mb_by_step"]["spill"]
    assert 48 <= peak < 1024, disk


def test_measure_without_a_disk_samples_none(tmp_path):
    run = measure([sys.executable, "-c", "pass"], tmp_path / "none.log")
    assert run.disk_free_start is None and run.disk_samples == []
    assert run.disk_summary([]) is None


def test_results_markdown_shows_the_disk_taken_and_the_steps_that_took_it(results):
    results["full_build"]["disk"] = {
        "free_start_gb": 30.0, "taken_peak_gb": 21.5, "free_lowest_gb": 8.5,
        "mb_by_step": {"warehouse_dbt_models": (22016.0, 20480.0)},
    }  # fmt: skip
    text = results_markdown(results)
    assert "| disk taken at most, GB (free at start -> lowest) | 21.50 (30.0 -> 8.5) | n/a |" in text
    assert "| warehouse_dbt_models | 22,016 | 20,480 |" in text
