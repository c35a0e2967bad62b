"""The client-base assets and checks on the embedded sample and on generated data with known ground truth."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest

from orchestration.defs.client_base.assets import build_client_base_assets
from orchestration.defs.client_base.checks import build_client_base_checks
from orchestration.partitions import daily_extract_partitions
from orchestration.resources import WarehouseResource

AS_OF = "2026-11-26"


def _materialize(env) -> dg.ExecuteInProcessResult:
    partitions = daily_extract_partitions(env.first_extract_date)
    result = dg.materialize(
        [*build_client_base_assets(partitions), *build_client_base_checks(partitions)],
        resources={
            "warehouse": WarehouseResource(
                duckdb_path=str(env.warehouse_path), landing_dir=str(env.landing_dir)
            )
        },
        partition_key=AS_OF,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.path[-1]}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def _read(env, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(env.warehouse_path), read_only=True) as conn:
        return conn.sql(sql).pl()


@pytest.fixture(scope="module")
def generated(generated_warehouse):
    env, manifest = generated_warehouse
    result = _materialize(env)
    return env, manifest, result


def test_sample_builds_and_checks_pass(sample_warehouse):
    result = _materialize(sample_warehouse)
    checks = _checks(result)
    assert len(checks) == 4 and all(checks.values()), checks
    clients = _read(sample_warehouse, "SELECT count(*) AS n FROM marts.dim_clients")["n"][0]
    assert _read(sample_warehouse, "SELECT count(*) AS n FROM marts.client_segments")["n"][0] == clients


def test_generated_checks_pass_and_totals_reconcile(generated):
    env, _, result = generated
    checks = _checks(result)
    assert all(checks.values()), checks
    fct = _read(
        env,
        f"SELECT sum(net_revenue_reporting)::DOUBLE AS t, sum(margin_reporting)::DOUBLE AS m "
        f"FROM marts.fct_client_turnover WHERE turnover_month <= DATE '{AS_OF}'",
    ).row(0)
    seg = _read(
        env,
        "SELECT sum(lifetime_turnover_reporting) AS t, sum(lifetime_margin_reporting) AS m FROM marts.client_segments",
    ).row(0)
    assert seg == pytest.approx(fct, abs=0.01)
    card = _read(
        env,
        "SELECT grouping, sum(lifetime_turnover_reporting) AS t, sum(lifetime_margin_reporting) AS m "
        "FROM marts.segment_scorecard GROUP BY 1",
    )
    assert card.height == 6
    for _, t, m in card.iter_rows():
        assert (t, m) == pytest.approx(fct, abs=0.01)


def test_generated_crisis_window_is_found(generated):
    env, manifest, _ = generated
    params = manifest["config"]["params"]
    row = _read(env, "SELECT DISTINCT crisis_start, crisis_end, baseline_start FROM marts.segment_scorecard")
    assert row.height == 1
    assert (row["crisis_start"][0], row["crisis_end"][0]) == (
        date.fromisoformat(params["crisis_start"]),
        date.fromisoformat(params["crisis_end"]),
    )
    assert row["baseline_start"][0] == date(2024, 3, 1)


def test_generated_holding_industries_rank_above_falling(generated):
    env, manifest, _ = generated
    group = {i["name"]: i["crisis_group"] for i in manifest["config"]["params"]["industries"]}
    ranks = _read(
        env, "SELECT industry, resilience_rank FROM marts.segment_scorecard WHERE grouping = 'industry'"
    )
    rank = dict(ranks.iter_rows())
    holding = [rank[i] for i, g in group.items() if g == "crisis_holding"]
    falling = [rank[i] for i, g in group.items() if g == "crisis_falling"]
    assert max(holding) < min(falling), rank


def test_generated_price_sensitive_segments_are_classed(generated):
    env, manifest, _ = generated
    segments = {s["name"]: s for s in manifest["config"]["params"]["segments"]}
    card = _read(
        env,
        "SELECT segment, discount_depth, price_elasticity, price_elasticity_low, price_elasticity_high, "
        "elastic_threshold, price_sensitivity_class FROM marts.segment_scorecard WHERE grouping = 'segment'",
    )
    rows = {r["segment"]: r for r in card.iter_rows(named=True)}
    # Elasticity: the segments planted more elastic than the book are classed high, the others low.
    book = rows[next(iter(rows))]["elastic_threshold"]
    for name, params in segments.items():
        expected = "high" if params["price_elasticity"] > 1.0 else "low"
        assert rows[name]["price_sensitivity_class"] == expected, (name, rows[name], book)
    # Discount depth: measured precisely, it follows the planted mean discount in order and size.
    by_depth = sorted(segments, key=lambda s: rows[s]["discount_depth"])
    assert by_depth == sorted(segments, key=lambda s: segments[s]["mean_discount"])
    for name, params in segments.items():
        assert rows[name]["discount_depth"] == pytest.approx(params["mean_discount"], abs=0.03)


def test_generated_effort_sinks_are_flagged(generated):
    env, manifest, _ = generated
    sinks = set(manifest["ground_truth"]["effort_sink_clients"]) if "ground_truth" in manifest else set()
    flagged = _read(
        env, "SELECT client_id, is_high_effort_low_return, effort_hours FROM marts.client_segments"
    )
    if not sinks:
        pytest.skip("manifest has no effort-sink clients")
    with_effort = flagged.filter(pl.col("effort_hours") > 0)
    sink_rate = with_effort.filter(pl.col("client_id").is_in(sinks))["is_high_effort_low_return"].mean()
    other_rate = with_effort.filter(~pl.col("client_id").is_in(sinks))["is_high_effort_low_return"].mean()
    assert sink_rate > 3 * other_rate, (sink_rate, other_rate)
