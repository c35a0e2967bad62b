"""The generated data carries its parameters: funnel reach, stage durations, crisis inflow drop."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data.generator import GeneratorConfig, Params, generate

SCALE = 0.1
END = date(2026, 11, 26)


def _load(out: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(next(Path(out).glob(f"extracts/*/{table}.parquet")))


@pytest.fixture(scope="module")
def calm_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GeneratorConfig, list[str]]:
    """No crisis and no defects, so the plain Markov chain of the params applies to every deal."""
    calm = tuple(
        dataclasses.replace(i, crisis_inflow_change=0.0, crisis_win_change=0.0, crisis_turnover_change=0.0)
        for i in Params().industries
    )
    cfg = GeneratorConfig(
        scale=SCALE,
        seed=21,
        layout="dump",
        format="parquet",
        defect_rate=0.0,
        end_date=END,
        params=Params(industries=calm),
    )
    out = tmp_path_factory.mktemp("calm")
    manifest = generate(cfg, out)
    return out, cfg, manifest.ground_truth["effort_sink_clients"]


def _mature_events(out: Path, sinks: list[str]) -> pl.DataFrame:
    deals = _load(out, "deals").filter(
        (pl.col("created_at") < pl.datetime(END.year - 1, END.month, END.day, time_zone="UTC"))
        & ~pl.col("client_id").is_in(sinks)
    )
    cat = _load(out, "stage_catalogue").select("pipeline_id", "stage_id", "stage_order", "is_won", "is_lost")
    return (
        _load(out, "deal_stage_history")
        .join(deals.select("deal_id", "client_id"), on="deal_id")
        .join(_load(out, "clients").unique("client_id").select("client_id", "segment"), on="client_id")
        .join(cat, on=["pipeline_id", "stage_id"])
    )


def test_stage_reach_matches_the_configured_chain(calm_world: tuple) -> None:
    out, cfg, sinks = calm_world
    ev = _mature_events(out, sinks)
    # Rank of an event on the any-stage scale: open stage order, won above all open stages, lost ignored.
    per_deal = (
        ev.filter(~pl.col("is_lost"))
        .group_by("deal_id", "pipeline_id", "segment")
        .agg(pl.col("stage_order").max().alias("top"))
    )
    checked = 0
    for (line, segment), grp in per_deal.group_by("pipeline_id", "segment"):
        expected = cfg.params.expected_reach(line, segment)
        n = grp.height
        for k, p in enumerate(expected):
            observed = (grp["top"] >= k + 1).mean()
            tol = 4 * np.sqrt(p * (1 - p) / n) + 0.01
            assert abs(observed - p) <= tol, (line, segment, k + 1, observed, p, n)
            checked += 1
    assert (
        checked
        == sum(len(cfg.params.expected_reach(p.business_line, "smb")) for p in cfg.params.pipelines) * 4
    )


def test_median_stage_durations_match_the_configured_medians(calm_world: tuple) -> None:
    out, cfg, sinks = calm_world
    ev = (
        _mature_events(out, sinks)
        .sort("deal_id", "changed_at")
        .with_columns(
            days=(pl.col("changed_at").shift(-1).over("deal_id") - pl.col("changed_at")).dt.total_seconds()
            / 86_400
        )
    )
    spells = ev.filter(~pl.col("is_won") & ~pl.col("is_lost") & pl.col("days").is_not_null())
    configured = pl.DataFrame(
        [
            (p.business_line, s.name, stage, days)
            for p in cfg.params.pipelines
            for s in cfg.params.segments
            for stage, days in zip(
                p.open_stages, cfg.params.median_days(p.business_line, s.name), strict=True
            )
        ],
        schema=["pipeline_id", "segment", "stage_id", "configured"],
        orient="row",
    )
    cells = spells.join(configured, on=["pipeline_id", "segment", "stage_id"]).with_columns(
        log_ratio=(pl.col("days") / pl.col("configured")).log()
    )
    assert abs(cells["log_ratio"].median()) < 0.05
    big = (
        cells.group_by("pipeline_id", "segment", "stage_id")
        .agg(pl.col("days").median().alias("median"), pl.col("configured").first(), pl.len().alias("n"))
        .filter(pl.col("n") >= 200)
    )
    assert big.height >= 10
    ratio = (big["median"] / big["configured"]).to_numpy()
    assert np.all(np.abs(np.log(ratio)) < 0.2), big


def test_crisis_falling_industries_lose_lead_inflow(tmp_path: Path) -> None:
    cfg = GeneratorConfig(scale=SCALE, seed=5, layout="dump", format="parquet", defect_rate=0.0, end_date=END)
    generate(cfg, tmp_path)
    p = cfg.params
    start, stop = date.fromisoformat(p.crisis_start), date.fromisoformat(p.crisis_end)
    base_start, base_stop = start.replace(year=start.year - 1), stop.replace(year=stop.year - 1)
    group = {i.name: i.crisis_group for i in p.industries}
    deals = (
        _load(tmp_path, "deals")
        .join(_load(tmp_path, "clients").unique("client_id").select("client_id", "industry"), on="client_id")
        .with_columns(day=pl.col("created_at").dt.date(), group=pl.col("industry").replace_strict(group))
    )

    def inflow(lo: date, hi: date) -> dict[str, int]:
        rows = deals.filter(pl.col("day").is_between(lo, hi)).group_by("group").len()
        return dict(rows.iter_rows())

    crisis, base = inflow(start, stop), inflow(base_start, base_stop + timedelta(days=0))
    observed = (crisis["crisis_falling"] / base["crisis_falling"]) / (
        crisis["crisis_holding"] / base["crisis_holding"]
    )

    def weighted(name: str) -> float:
        members = [i for i in p.industries if i.crisis_group == name]
        return sum(i.lead_share * (1 + i.crisis_inflow_change) for i in members) / sum(
            i.lead_share for i in members
        )

    expected = weighted("crisis_falling") / weighted("crisis_holding")
    assert expected < 0.7
    assert abs(observed - expected) < 0.1, (observed, expected)
