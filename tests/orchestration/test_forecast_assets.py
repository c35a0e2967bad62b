"""The forecast assets materialised against the session warehouses: the generated one (scale 0.1, known
ground truth) for the backtest's acceptance figures, the embedded sample for the kept history."""

import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from orchestration.defs.forecast.assets import (
    build_forecast_assets,
    live_calibration,
    live_forecast,
    load_funnel_spells,
    read_amount_history,
    warehouse_fingerprints,
)
from orchestration.defs.forecast.checks import build_forecast_checks
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource
from transforms.forecast import ForecastSettings, cutoff_for, forecast_as_of, window_deals_sql
from transforms.forecast_backtest import backtest_origins, origin_fingerprints
from transforms.forecast_history import deal_states_at, forecast_changes
from transforms.sql import tables


def _materialize(env, warehouse_path, partition_key: str, selection=None) -> dg.ExecuteInProcessResult:
    partitions = daily_extract_partitions(env.first_extract_date)
    definitions = [*build_forecast_assets(partitions), *build_forecast_checks(partitions)]
    return dg.materialize(
        definitions,
        selection=selection,
        resources={
            "warehouse": WarehouseResource(duckdb_path=str(warehouse_path), landing_dir=str(env.landing_dir))
        },
        partition_key=partition_key,
        raise_on_error=True,
    )


def _last_extract_date(env) -> date:
    return max(date.fromisoformat(p.name) for p in env.landing_dir.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def generated_forecast(generated_warehouse, tmp_path_factory):
    """The forecast assets run once on a copy of the generated warehouse (the session's stays untouched)."""
    env, manifest = generated_warehouse
    copy = tmp_path_factory.mktemp("forecast_generated") / "funnel.duckdb"
    shutil.copy(env.warehouse_path, copy)
    result = _materialize(env, copy, _last_extract_date(env).isoformat())
    with duckdb.connect(str(copy), read_only=True) as conn:
        tables = {
            name: conn.sql(f"SELECT * FROM marts.{name}").pl()
            for name in (
                "pipeline_forecast",
                "pipeline_forecast_deals",
                "forecast_backtest",
                "forecast_backtest_summary",
            )
        }
    return result, tables, manifest


def test_assets_and_checks_pass_on_generated_data(generated_forecast):
    result, tables, _ = generated_forecast
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {
        "probabilities_within_unit_interval": True,
        "percentiles_ordered": True,
        "forecast_reproducible": True,
        "backtest_percentiles_ordered": True,
        "learned_beats_naive": True,
    }
    assert tables["pipeline_forecast_deals"].height > 100


def test_learned_backtest_beats_the_naive_weighted_pipeline(generated_forecast):
    """The issue's acceptance check: over monthly origins, the learned method's MAPE (total, all lines)
    is below the naive weighted pipeline's, for the 1-month and the 3-month window."""
    _, tables, _ = generated_forecast
    total = tables["forecast_backtest_summary"].filter(pl.col("business_line") == "all")
    mape = {(h, m): v for h, m, v in total.select("horizon_months", "method", "mape").iter_rows()}
    origins = total.get_column("origins").unique().to_list()
    assert len(origins) == 1 and origins[0] >= 18  # monthly origins over the history after a year's warm-up
    for horizon in (1, 3):
        assert mape[(horizon, "learned")] < mape[(horizon, "naive")]
        assert mape[(horizon, "learned")] < mape[(horizon, "naive_unphased")]


def test_p10_p90_range_holds_the_actual_at_most_origins(generated_forecast):
    """Coverage measured: share of origins (total, all lines) whose actual won revenue lies within the
    calibrated P10-P90; about 0.8 for an honest range. The simulated range alone held it in 62-71 % of
    origins (it knows no model error); widened by the errors of earlier closed windows it is near 0.8
    (a crisis the model cannot know keeps the 3-month figure under it). 21 origins: one is 5 points."""
    _, tables, _ = generated_forecast
    learned = tables["forecast_backtest_summary"].filter(pl.col("method") == "learned")
    total = learned.filter(pl.col("business_line") == "all")
    for coverage in total.get_column("p10_p90_coverage"):
        assert 0.7 <= coverage <= 0.95
    for coverage in learned.get_column("p10_p90_coverage"):
        assert 0.6 <= coverage <= 1.0
    # Calibration only widens: never less coverage than the simulated range, and more in total.
    assert (learned["p10_p90_coverage"] >= learned["simulated_p10_p90_coverage"]).all()
    assert total["p10_p90_coverage"].sum() > total["simulated_p10_p90_coverage"].sum()
    # The live forecast's range is widened by the same component.
    live = tables["pipeline_forecast"]
    assert (live["calibration_log_sd"] > 0).any()


def test_stage_win_probability_near_the_generator_truth(generated_forecast):
    """P(win | last open stage) of the chain against params.py: the step rate to won (times the share of
    exits that are not backward moves), averaged over segments; the chain also sees the crisis and the
    effort-sink clients, which pull it down a little."""
    _, tables, manifest = generated_forecast
    params = manifest["config"]["params"]
    deals = tables["pipeline_forecast_deals"]
    for pipeline in params["pipelines"]:
        line = pipeline["business_line"]
        last_stage = pipeline["open_stages"][-1]
        steps = params["step_rates"][line]
        truth = sum(rates[-1] for rates in steps.values()) / len(steps) * (1 - params["backward_share"])
        learned = deals.filter((pl.col("business_line") == line) & (pl.col("stage_id") == last_stage))
        if learned.height:
            assert learned["stage_win_probability"].mean() == pytest.approx(truth, abs=0.12)


def test_history_keeps_each_run_and_explains_the_move(sample_warehouse, tmp_path):
    env = sample_warehouse
    copy = tmp_path / "funnel.duckdb"
    shutil.copy(env.warehouse_path, copy)
    last = _last_extract_date(env)
    earlier = last - timedelta(days=7)
    keys = [
        dg.AssetKey(["marts", name])
        for name in (
            "pipeline_forecast",
            "pipeline_forecast_deals",
            "forecast_history",
            "forecast_history_deals",
            "forecast_changes",
        )
    ]
    for key in (earlier, last, last):  # the last run twice: its rows are replaced, not doubled
        _materialize(env, copy, key.isoformat(), selection=keys)
    with duckdb.connect(str(copy), read_only=True) as conn:
        history = conn.sql(
            "SELECT as_of_date, count(*) AS n FROM marts.forecast_history GROUP BY 1 ORDER BY 1"
        ).pl()
        forecast_rows = conn.sql("SELECT count(*) FROM marts.pipeline_forecast").fetchall()[0][0]
        changes = conn.sql("SELECT * FROM marts.forecast_changes").pl()
        history_deals = conn.sql("SELECT * FROM marts.forecast_history_deals").pl()
    assert history.get_column("as_of_date").to_list() == [earlier, last]
    assert history.filter(pl.col("as_of_date") == last)["n"].item() == forecast_rows
    assert changes.get_column("previous_as_of_date").unique().to_list() == [earlier]
    # Every deal open in either run is explained once; the contributions add up to the move of the open
    # pipeline's expected value plus what was won in between.
    previous = history_deals.filter(pl.col("as_of_date") == earlier)
    latest = history_deals.filter(pl.col("as_of_date") == last)
    assert changes.height == len(set(previous["deal_id"]) | set(latest["deal_id"]))
    won = changes.filter(pl.col("change_type") == "won")["expected_won_amount"].sum()
    move = latest["expected_won_amount"].sum() - previous["expected_won_amount"].sum() + won
    assert changes["contribution"].sum() == pytest.approx(move, rel=1e-9)
    # The asset reads the spells of those deals only; the states of every deal give the same table.
    with duckdb.connect(str(copy), read_only=True) as conn:
        every_deal, _ = load_funnel_spells(conn)
    states = deal_states_at(every_deal, cutoff_for(last))
    expected = forecast_changes(previous.lazy(), latest.lazy(), states).collect()
    assert changes.sort("deal_id").equals(expected.sort("deal_id"))


def _backtest_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["marts", "forecast_backtest"])
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_daily_backtest_recomputes_only_origins_whose_inputs_changed(generated_warehouse, tmp_path):
    """The backtest keeps each origin's forecast with a fingerprint of its inputs: a second run on the
    same data recomputes nothing, nor does a deal re-priced after the last origin (what a daily extract
    brings), a corrected old deal amount recomputes exactly the origins that saw the deal, and the table
    then equals one built from scratch."""
    env, _ = generated_warehouse
    copy = tmp_path / "funnel.duckdb"
    shutil.copy(env.warehouse_path, copy)
    keys = [dg.AssetKey(["marts", "forecast_backtest"]), dg.AssetKey(["marts", "forecast_backtest_summary"])]
    partition = _last_extract_date(env).isoformat()

    def run() -> tuple[dict, pl.DataFrame]:
        result = _materialize(env, copy, partition, selection=keys)
        with duckdb.connect(str(copy), read_only=True) as conn:
            table = conn.sql("SELECT * FROM marts.forecast_backtest ORDER BY ALL").pl()
        return _backtest_metadata(result), table

    with duckdb.connect(str(copy)) as conn:
        conn.execute("DROP TABLE IF EXISTS marts.forecast_backtest")
    first, table = run()
    assert first["origins_recomputed"] == first["origins"] >= 18
    second, again = run()
    assert second["origins_recomputed"] == 0 and second["origins_reused"] == first["origins"]
    assert again.equals(table)
    origins = sorted(table["origin_date"].unique().to_list())
    with duckdb.connect(str(copy)) as conn:
        deal = conn.execute(
            """SELECT deal_id FROM intermediate.int_deal_stage_spells GROUP BY deal_id
               HAVING min(entered_at) >= ? AND min(entered_at) < ? ORDER BY deal_id LIMIT 1""",
            [origins[4], origins[5]],
        ).fetchall()[0][0]
        # Re-priced today, as a daily extract does (dbt adds a row to the amount history, and dim_deals,
        # a view over int_deals_base, carries the new amount): no origin valued the deal at it.
        conn.execute(
            "INSERT INTO intermediate.int_deal_amounts_known VALUES (?, ?, 654321.0)",
            [deal, datetime.combine(_last_extract_date(env), datetime.min.time())],
        )
        conn.execute(
            "UPDATE intermediate.int_deals_base SET amount_reporting = 654321.0 WHERE deal_id = ?", [deal]
        )
    daily, _ = run()
    assert daily["origins_recomputed"] == 0
    # Correct the amount the deal always had (as a corrected extract would after dbt): the origins from
    # the 6th on saw the deal, the first five did not.
    with duckdb.connect(str(copy)) as conn:
        conn.execute(
            "UPDATE intermediate.int_deal_amounts_known SET amount_reporting = 123456.78 "
            "WHERE deal_id = ? AND known_from < ?",
            [deal, datetime.combine(_last_extract_date(env), datetime.min.time())],
        )
    third, corrected = run()
    assert third["origins_recomputed"] == len(origins) - 5
    assert third["recomputed"].startswith(origins[5].isoformat())
    with duckdb.connect(str(copy)) as conn:
        conn.execute("DROP TABLE marts.forecast_backtest")
    _, scratch = run()
    assert corrected.equals(scratch)
    assert not corrected.equals(table)


def test_backtest_fingerprints_in_the_warehouse_equal_those_of_the_frame_the_forecast_reads(
    generated_warehouse,
):
    """The backtest fingerprints its origins in DuckDB over the warehouse's relations, without reading
    the spells. Over the frame the forecast reads (funnel_spells' joins) and the amount history, the same
    fingerprints come out: both see the same deals, segments (a deal without a client's included) and
    values."""
    env, _ = generated_warehouse
    settings = ForecastSettings()
    with duckdb.connect(str(env.warehouse_path), read_only=True) as conn:
        spells, stages = load_funnel_spells(conn)
        amounts = read_amount_history(conn)
        first_event_at = spells.select(pl.col("entered_at").min()).collect().item()
        origins = backtest_origins(first_event_at, _last_extract_date(env), 12, 3)
        in_warehouse = warehouse_fingerprints(conn, stages, origins, settings)
    over_frame = origin_fingerprints(spells, stages, origins, settings, amounts)
    assert len(origins) >= 18 and in_warehouse["input_fingerprint"].n_unique() == len(origins)
    assert in_warehouse.equals(over_frame)


@pytest.mark.parametrize("days_back", [0, 200])
def test_the_live_forecast_reads_the_window_deals_and_gives_the_forecast_over_every_spell(
    generated_warehouse, days_back
):
    """The live forecast holds in memory only the deals its training window needs, and computes the age
    factors and segments, which span the whole history, in DuckDB over every spell. Its tables are the
    forecast over every spell in memory to the last bit, as of the last extract and of a date 200 days
    earlier (a backfill, whose window is older: deals closed after it but before today are read)."""
    env, _ = generated_warehouse
    settings = ForecastSettings()
    as_of = _last_extract_date(env) - timedelta(days=days_back)
    with duckdb.connect(str(env.warehouse_path), read_only=True) as conn:
        spells, stages = load_funnel_spells(conn)
        calibration = live_calibration(conn, as_of)
        with tables(conn, {"spells": "intermediate.int_deal_stage_spells"}) as t:
            window_deals = t.frame(window_deals_sql(cutoff_for(as_of), settings))
        live = live_forecast(conn, as_of, 2, settings, calibration)
    every = forecast_as_of(spells, stages, as_of, 2, settings, calibration)
    all_deals = spells.select(pl.col("deal_id").n_unique()).collect().item()
    assert 0 < window_deals.height < all_deals  # some deals are left to the age factors alone
    assert live.periods.equals(every.periods)
    assert live.deals.equals(every.deals)
    assert live.deals.height > 100
