from datetime import date, datetime

import numpy as np
import polars as pl
import pytest

from transforms.client_scorecard import (
    GROUPINGS,
    ScorecardSettings,
    attribute_business_line,
    crisis_window,
    discount_depth_estimate,
    price_elasticity,
    segment_scorecard,
)


def _planted_deals(elasticity: dict[str, float], deals_per_group: int, seed: int) -> pl.LazyFrame:
    """Deals as the generator makes them: discount ~ Beta, size lognormal per business line, volume at
    list price = size x (1 - discount) ** -elasticity."""
    rng = np.random.default_rng(seed)
    frames = []
    for group, e in elasticity.items():
        n = deals_per_group
        line = rng.choice(["software", "hardware"], n)
        discount = rng.beta(0.15 * 12, 0.85 * 12, n)
        size = np.where(line == "software", 30_000.0, 90_000.0) * np.exp(0.7 * rng.normal(size=n))
        volume = size * (1 - discount) ** -e
        frames.append(
            pl.DataFrame(
                {
                    "group": group,
                    "client_id": [f"{group}-{i // 3}" for i in range(n)],  # three deals per client
                    "business_line": line,
                    "segment": "any",
                    "log_volume": np.log(volume),
                    "log_price_level": np.log(1 - discount),
                }
            )
        )
    return pl.concat(frames).lazy()


def test_price_elasticity_recovers_planted_response():
    planted = {"elastic": 1.8, "inelastic": 0.3}
    out = price_elasticity(_planted_deals(planted, 6000, seed=11), ["group"], ["business_line", "segment"])
    rows = {r["group"]: r for r in out.collect().iter_rows(named=True)}
    for group, truth in planted.items():
        row = rows[group]
        # SE ~ 0.7 / (sd log(1-d) ~ 0.12 x sqrt(6000)) ~ 0.08: within 0.25 and inside the 95 % interval.
        assert row["price_elasticity"] == pytest.approx(truth, abs=0.25)
        assert row["price_elasticity_low"] <= truth <= row["price_elasticity_high"]
        assert 0.03 < row["price_elasticity_se"] < 0.15
        assert row["elasticity_deal_count"] == 6000


def test_price_elasticity_exact_on_noiseless_data():
    # log volume = a[line] - 1.5 x log price level exactly: slope -1.5 whatever the line levels.
    x = np.log([0.9, 0.8, 0.95, 0.7, 0.85, 0.75])
    frame = pl.LazyFrame(
        {
            "client_id": ["a", "b", "c", "d", "e", "f"],
            "business_line": ["s", "s", "s", "h", "h", "h"],
            "segment": "x",
            "log_price_level": x,
            "log_volume": np.where(np.arange(6) < 3, 2.0, 5.0) - 1.5 * x,
        }
    )
    row = price_elasticity(frame, [], ["business_line", "segment"]).collect().row(0, named=True)
    assert row["price_elasticity"] == pytest.approx(1.5)
    assert row["price_elasticity_se"] == pytest.approx(0.0, abs=1e-9)


def test_discount_depth_is_list_weighted_with_clustered_error():
    lines = pl.LazyFrame(
        {
            "client_id": ["a", "a", "b"],
            "net_amount_reporting": [45.0, 45.0, 160.0],
            "list_amount_reporting": [50.0, 50.0, 200.0],
        }
    )
    row = discount_depth_estimate(lines, []).collect().row(0, named=True)
    # 1 - 250 / 300 = 1/6. Residuals per client: a: 10 - 100/6 = -6.67, b: 40 - 200/6 = 6.67;
    # var = 2/1 x (6.67^2 + 6.67^2) / 300^2 = 0.001975 -> SE 0.0444.
    assert row["discount_depth"] == pytest.approx(1 / 6)
    assert row["discount_depth_se"] == pytest.approx((2 * 2 * (20 / 3) ** 2 / 300**2) ** 0.5)


def _monthly_deals(counts: dict[date, int]) -> pl.LazyFrame:
    created = [datetime(m.year, m.month, 10) for m, n in counts.items() for _ in range(n)]
    return pl.LazyFrame({"created_at": created})


def _months(first: date, n: int) -> list[date]:
    return [
        date(first.year + (first.month - 1 + i) // 12, (first.month - 1 + i) % 12 + 1, 1) for i in range(n)
    ]


def test_crisis_window_detects_the_steepest_year_over_year_drop():
    # 30 months from 2023-01 with 20 deals each, growing by one a year; March-August 2024 halved.
    counts = {}
    for m in _months(date(2023, 1, 1), 30):
        counts[m] = 20 + (m.year - 2023) - (10 if m.year == 2024 and 3 <= m.month <= 8 else 0)
    row = crisis_window(_monthly_deals(counts), date(2025, 7, 3)).collect().row(0, named=True)
    assert (row["crisis_start"], row["crisis_end"]) == (date(2024, 3, 1), date(2024, 8, 31))
    assert (row["baseline_start"], row["baseline_end"]) == (date(2023, 3, 1), date(2023, 8, 31))
    # Crisis 6 x 11 = 66 against 6 x 20 = 120: -45 %.
    assert row["crisis_inflow_change"] == pytest.approx(66 / 120 - 1)
    assert row["crisis_window_method"].startswith("detected")


def test_crisis_window_configured_and_too_short_history():
    configured = ScorecardSettings(crisis_start=date(2025, 3, 1), crisis_end=date(2025, 8, 31))
    row = crisis_window(_monthly_deals({}), date(2026, 1, 1), configured).collect().row(0, named=True)
    assert row["baseline_start"] == date(2024, 3, 1) and row["crisis_window_method"] == "configured"
    short = {m: 5 for m in _months(date(2025, 1, 1), 10)}
    assert crisis_window(_monthly_deals(short), date(2025, 11, 2)).collect().height == 0
    with pytest.raises(ValueError, match="both"):
        crisis_window(_monthly_deals({}), date(2026, 1, 1), ScorecardSettings(crisis_start=date(2025, 1, 1)))


def test_business_line_from_deal_else_product_category():
    lines = pl.LazyFrame(
        {
            "line": [1, 2, 3, 4],
            "deal_id": ["d1", "d2", None, None],
            "product_category": ["licence", "devices", "licence", "other"],
            "net_amount_reporting": [10.0, 20.0, 5.0, 1.0],
        }
    )
    deals = pl.LazyFrame({"deal_id": ["d1", "d2"], "business_line": ["software", "hardware"]})
    out = attribute_business_line(lines, deals).collect().sort("line")
    assert out["business_line"].to_list() == ["software", "hardware", "software", "unattributed"]


def _scorecard_inputs():
    segments = pl.LazyFrame(
        {
            "client_id": ["c1", "c2", "c3"],
            "industry": ["retail", "retail", "utilities"],
            "use_case": ["supply_chain", "finance", "supply_chain"],
            "segment": ["smb", "smb", "enterprise"],
            "window_start_month": date(2025, 1, 1),
            "window_end_month": date(2025, 12, 1),
            "turnover_reporting": [100.0, 0.0, 300.0],
            "abc_turnover_class": ["B", "C", "A"],
            "abc_margin_class": ["B", "C", "A"],
            "xyz_class": ["X", "Z", "Y"],
            "is_high_effort_low_return": [False, True, False],
            "headroom_reporting": [200.0, 300.0, 0.0],
        }
    )
    lines = pl.LazyFrame(
        {
            "client_id": ["c1", "c1", "c3", "c3", "c2"],
            "deal_id": ["d1", None, "d3", "d3", None],
            "product_category": ["lic", "lic", "dev", "dev", "lic"],
            "issue_date": [
                date(2024, 5, 3),
                date(2025, 5, 3),
                date(2025, 2, 1),
                date(2025, 2, 1),
                date(2026, 3, 1),
            ],
            "turnover_month": [
                date(2024, 5, 1),
                date(2025, 5, 1),
                date(2025, 2, 1),
                date(2025, 2, 1),
                date(2026, 3, 1),
            ],
            "is_credit_note": [False, False, False, False, False],
            "net_amount_reporting": [50.0, 100.0, 200.0, 100.0, 999.0],
            "list_amount_reporting": [50.0, 100.0, 250.0, 125.0, 999.0],
            "margin_reporting": [5.0, 10.0, 60.0, 30.0, 99.0],
        }
    )
    deals = pl.LazyFrame(
        {
            "deal_id": ["d1", "d3", "d4"],
            "client_id": ["c1", "c3", "c2"],
            "business_line": ["software", "hardware", "software"],
            "created_at": [datetime(2024, 3, 1), datetime(2025, 1, 5), datetime(2025, 3, 1)],
            "status": ["won", "won", "lost"],
            "won_at": [datetime(2024, 4, 1), datetime(2025, 1, 20), None],
            "lost_at": [None, None, datetime(2025, 6, 1)],
            "amount_reporting": [50.0, 300.0, 80.0],
        }
    )
    crisis = pl.LazyFrame(
        {
            "crisis_start": [date(2025, 3, 1)],
            "crisis_end": [date(2025, 8, 31)],
            "baseline_start": [date(2024, 3, 1)],
            "baseline_end": [date(2024, 8, 31)],
            "crisis_inflow_change": [None],
            "crisis_window_method": ["configured"],
        },
        schema_overrides={"crisis_inflow_change": pl.Float64},
    )
    return segments, lines, deals, crisis


def test_scorecard_totals_and_shares_by_hand():
    segments, lines, deals, crisis = _scorecard_inputs()
    out = segment_scorecard(segments, lines, deals, crisis, date(2026, 1, 15)).collect()
    assert set(out["grouping"]) == set(GROUPINGS)
    # The 2026-03 line is after the as-of month: left out. Lifetime 50 + 100 + 200 + 100 = 450, margin 105.
    totals = out.group_by("grouping").agg(
        pl.col("lifetime_turnover_reporting").sum(), pl.col("lifetime_margin_reporting").sum()
    )
    assert totals["lifetime_turnover_reporting"].to_list() == pytest.approx([450.0] * len(GROUPINGS))
    assert totals["lifetime_margin_reporting"].to_list() == pytest.approx([105.0] * len(GROUPINGS))
    industry = {
        r["segment_label"]: r for r in out.filter(pl.col("grouping") == "industry").iter_rows(named=True)
    }
    # Window 2025: retail 100, utilities 300 -> shares 0.25 / 0.75.
    assert industry["retail"]["turnover_share"] == pytest.approx(0.25)
    assert industry["retail"]["client_count"] == 2 and industry["retail"]["abc_turnover_c_client_count"] == 1
    assert industry["retail"]["headroom_reporting"] == pytest.approx(500.0)
    # Crisis Mar-Aug 2025 vs Mar-Aug 2024 for retail: turnover 100 vs 50 (+100 %); deals created 1 vs 1.
    assert industry["retail"]["turnover_change"] == pytest.approx(1.0)
    assert industry["retail"]["lead_inflow_change"] == pytest.approx(0.0)
    # Win rate 2025 for retail: d4 lost -> 0; utilities: d3 won -> 1.
    assert industry["retail"]["win_rate"] == pytest.approx(0.0)
    assert industry["utilities"]["win_rate"] == pytest.approx(1.0)
    lines_ = {
        r["segment_label"]: r for r in out.filter(pl.col("grouping") == "business_line").iter_rows(named=True)
    }
    # The deal-less c1 line (category lic) goes to software, the line of lic's attributed turnover.
    assert lines_["software"]["lifetime_turnover_reporting"] == pytest.approx(150.0)
    assert lines_["hardware"]["discount_depth"] == pytest.approx(0.2)
    assert out["crisis_window_method"].unique().to_list() == ["configured"]
