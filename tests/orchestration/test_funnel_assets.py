"""The funnel assets and checks on the generated warehouse (scale 0.1, known ground truth)."""

import math
from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.generator.params import Params
from ingestion.frames import read_frame
from orchestration.defs.funnel.assets import build_funnel_assets
from orchestration.defs.funnel.checks import build_funnel_checks
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource
from transforms.lead_requirements import lead_requirements
from transforms.segment_focus import segment_focus

AS_OF = "2026-11-26"


@pytest.fixture(scope="module")
def funnel_run(generated_warehouse):
    env, manifest = generated_warehouse
    partitions = daily_extract_partitions(env.first_extract_date)
    result = dg.materialize(
        [*build_funnel_assets(partitions), *build_funnel_checks(partitions)],
        resources={
            "warehouse": WarehouseResource(
                duckdb_path=str(env.warehouse_path), landing_dir=str(env.landing_dir)
            )
        },
        partition_key=AS_OF,
        raise_on_error=False,
    )
    return env, manifest, result


def table(env, name: str) -> pl.DataFrame:
    with duckdb.connect(str(env.warehouse_path), read_only=True) as conn:
        return read_frame(conn, "marts", name)


def test_every_check_passes_and_the_ui_shows_a_headline(funnel_run):
    _, _, result = funnel_run
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 11
    assert [e.check_name for e in evaluations if not e.passed] == []
    assert result.success
    metadata = {
        m.asset_key.path[-1]: m.materialization.metadata for m in result.get_asset_materialization_events()
    }
    assert "| business_line |" in metadata["funnel_conversion"]["last_quarter"].value
    assert metadata["segment_focus"]["dagster/row_count"].value == 12


def test_step_conversions_and_stage_durations_recover_the_generator(funnel_run):
    env, manifest, _ = funnel_run
    params = Params()
    assert manifest["config"]["params"]["step_rates"]["software"]["smb"] == list(
        params.step_rates["software"]["smb"]
    )
    quarters = table(env, "funnel_conversion").filter(
        (pl.col("period_grain") == "quarter")
        & (pl.col("business_line") != "(all)")
        & (pl.col("segment") != "(all)")
        & (pl.col("stage_id") != "won")
    )
    # Counts add up over periods: the whole history per line x segment x stage.
    history = quarters.group_by("business_line", "segment", "stage_number").agg(
        pl.col("advanced_count").sum(),
        (pl.col("advanced_count") + pl.col("dropped_count")).sum().alias("decided"),
        pl.col("time_in_stage_median_days").median(),
    )
    assert history.height == (5 + 4 + 5) * 4  # open stages of the three pipelines, four segments each
    misses = []
    for row in history.iter_rows(named=True):
        line, segment, k = row["business_line"], row["segment"], row["stage_number"] - 1
        reach = params.expected_reach(line, segment)  # exact for the generator's chain (crisis aside)
        expected, observed = reach[k + 1] / reach[k], row["advanced_count"] / row["decided"]
        tolerance = 3 * math.sqrt(expected * (1 - expected) / row["decided"]) + 0.02
        if abs(observed - expected) > tolerance:
            misses.append((line, segment, k, observed, expected))
        configured_days = params.median_days(line, segment)[k]
        if abs(row["time_in_stage_median_days"] / configured_days - 1) > 0.2:
            misses.append((line, segment, k, row["time_in_stage_median_days"], configured_days))
    assert misses == []


def test_reverse_funnel_gives_back_every_segments_target(funnel_run):
    env, _, _ = funnel_run
    first = table(env, "lead_requirements").filter(pl.col("stage_number") == 1)
    assert first.height == 9 * 12  # nine target quarters x twelve line x segment cells
    product = first["leads_needed"] * first["conversion_to_won"] * first["average_won_deal_reporting"]
    assert product.to_list() == pytest.approx(first["revenue_target_reporting"].to_list(), rel=1e-9)
    assert (first["conversion_to_won_low"] <= first["conversion_to_won"]).all()
    assert (first["conversion_to_won"] <= first["conversion_to_won_high"]).all()


def test_early_warning_is_quiet_in_calm_times_and_fires_in_the_crisis(funnel_run):
    env, manifest, _ = funnel_run
    assert manifest["config"]["params"]["crisis_start"] == "2025-03-01"
    with duckdb.connect(str(env.warehouse_path), read_only=True) as conn:
        frames = {
            "transitions": read_frame(conn, "marts", "fct_stage_transitions").lazy(),
            "dim_deals": read_frame(conn, "marts", "dim_deals").lazy(),
            "dim_clients": read_frame(conn, "marts", "dim_clients").lazy(),
            "targets": read_frame(conn, "staging", "stg_planning__targets").lazy(),
        }
        stages = read_frame(conn, "staging", "stg_crm__stages").lazy()
    calm = table(env, "segment_focus")
    assert calm["is_early_warning"].sum() == 0
    crisis_as_of = date(2025, 6, 30)
    requirements = lead_requirements(**frames, stages=stages, as_of=crisis_as_of)
    crisis = segment_focus(
        requirements, **frames, as_of=crisis_as_of, period_start=date(2025, 10, 1)
    ).collect()
    assert crisis["is_early_warning"].sum() >= 2


def test_the_marts_of_a_run_share_its_deal_facts_and_a_mart_alone_computes_them(funnel_run, tmp_path):
    """The deal facts are computed once per run (shared.deal_facts) and read by the funnel marts of the
    same run; a mart materialized alone (another run) does not trust them and computes its own, with
    the same figures (to float rounding: DuckDB's and Polars' parallel sums do not fix the order in which
    they add, so the last bits of a sum can differ between any two runs)."""
    env, _, result = funnel_run
    metadata = {
        m.asset_key.path[-1]: m.materialization.metadata for m in result.get_asset_materialization_events()
    }
    assert metadata["deal_facts"]["outcomes_rows"].value > 1000
    marts = ["funnel_conversion", "funnel_cohorts", "lead_requirements", "segment_focus"]
    assert {name: metadata[name]["deal_facts"].value for name in marts} == dict.fromkeys(
        marts, "read from shared.deal_facts"
    )
    shared = {name: table(env, name) for name in ["funnel_conversion", "lead_requirements"]}

    copy = tmp_path / "funnel.duckdb"
    copy.write_bytes(env.warehouse_path.read_bytes())
    with duckdb.connect(str(copy)) as conn:  # facts that a mart must not read: not of its run
        conn.execute("UPDATE shared.outcomes SET status = 'lost'")
    partitions = daily_extract_partitions(env.first_extract_date)
    chosen = [a for a in build_funnel_assets(partitions) if a.key.path[-1] in shared]
    alone = dg.materialize(
        chosen,
        resources={"warehouse": WarehouseResource(duckdb_path=str(copy), landing_dir=str(env.landing_dir))},
        partition_key=AS_OF,
    )
    for event in alone.get_asset_materialization_events():
        assert event.materialization.metadata["deal_facts"].value == "computed by this step"
    with duckdb.connect(str(copy), read_only=True) as conn:
        for name, frame in shared.items():
            assert_frame_equal(read_frame(conn, "marts", name), frame, rel_tol=1e-12, abs_tol=0)
