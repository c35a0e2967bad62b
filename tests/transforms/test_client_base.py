from datetime import date, datetime

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.client_base import (
    SegmentationSettings,
    analysis_window,
    client_segments,
    quintile_score,
    with_abc_class,
    xyz_class,
)

AS_OF = date(2026, 5, 15)  # window of 4 complete months: 2026-01 .. 2026-04
FOUR_MONTHS = SegmentationSettings(analysis_months=4, min_peer_clients=2)


def _abc(values: dict[str, float], a: float = 0.8, b: float = 0.95) -> dict[str, str]:
    frame = pl.LazyFrame({"client_id": list(values), "value": list(values.values())})
    out = with_abc_class(frame, "value", "abc", a, b).collect()
    return dict(zip(out["client_id"], out["abc_class"], strict=True))


def test_abc_follows_thresholds_exactly():
    # Total 100: cumulative 50, 80, 90, 96, 100 %. "Up to 80 %" includes the client at exactly 80 %
    # (A = c1 + c2 = 80 %), B up to 95 % (c3 at 90 %), c4 crosses 95 % so it is C; c6 has nothing: C.
    classes = _abc({"c1": 50, "c2": 30, "c3": 10, "c4": 6, "c5": 4, "c6": 0})
    assert classes == {"c1": "A", "c2": "A", "c3": "B", "c4": "C", "c5": "C", "c6": "C"}


def test_abc_client_crossing_the_line_goes_to_the_lower_class():
    # 85 alone is 85 % > 80 %: B; A stays empty rather than holding more than 80 %.
    assert _abc({"big": 85, "small": 15}) == {"big": "B", "small": "C"}


def test_abc_rejects_thresholds_out_of_order():
    with pytest.raises(ValueError, match="ABC thresholds"):
        _abc({"c1": 1}, a=0.95, b=0.8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=40))
def test_abc_shares_never_exceed_thresholds(values):
    frame = pl.LazyFrame({"client_id": [f"c{i:03d}" for i in range(len(values))], "value": values})
    out = with_abc_class(frame, "value", "abc", 0.8, 0.95).collect()
    total = sum(values)
    share = lambda classes: out.filter(pl.col("abc_class").is_in(classes))["value"].sum() / total  # noqa: E731
    assert out["abc_class"].is_in(["A", "B", "C"]).all()
    if total > 0:
        assert share(["A"]) <= 0.8 + 1e-9
        assert share(["A", "B"]) <= 0.95 + 1e-9
    # A larger value never gets a lower class than a smaller one (equal values: by client id).
    order = out.sort(["value", "client_id"], descending=[True, False])["abc_class"].to_list()
    assert order == sorted(order)


def test_xyz_class_thresholds_and_missing_cv():
    frame = pl.DataFrame({"cv": [0.0, 0.5, 0.51, 1.0, 1.2, None]})
    assert frame.select(xyz_class("cv", 0.5, 1.0).alias("xyz"))["xyz"].to_list() == [
        "X",
        "X",
        "Y",
        "Y",
        "Z",
        "Z",
    ]


def test_quintile_score_ranks_eligible_rows_only():
    frame = pl.DataFrame({"v": [1.0, 2.0, 3.0, 4.0, 5.0, 99.0], "ok": [True] * 5 + [False]})
    scores = frame.select(quintile_score(pl.col("v"), True, pl.col("ok")).alias("s"))["s"].to_list()
    # Five eligible rows: one per quintile; the ineligible row gets 0 however large its value.
    assert scores == [1, 2, 3, 4, 5, 0]


def test_analysis_window_is_complete_months_before_as_of():
    assert analysis_window(date(2026, 11, 26), 12) == (date(2025, 11, 1), date(2026, 10, 1))
    assert analysis_window(date(2026, 1, 31), 2) == (date(2025, 11, 1), date(2025, 12, 1))


def _clients() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "client_id": ["steady", "gappy", "lumpy", "prospect", "gone"],
            "industry": ["retail", "retail", "utilities", None, "retail"],
            "use_case": ["supply_chain"] * 5,
            "segment": ["smb"] * 5,
            "revenue_band": ["small"] * 5,
            "is_deleted": [False, False, False, False, True],
            "merged_into_client_id": [None] * 5,
        }
    )


def _turnover() -> pl.LazyFrame:
    months = [date(2026, m, 1) for m in (1, 2, 3, 4)]
    rows = [
        # steady: 100 every month -> CV 0 (X); plus 1000 before the window (lifetime only).
        *[("steady", m, 100.0, 40.0) for m in months],
        ("steady", date(2025, 6, 1), 1000.0, 100.0),
        # gappy: 100, 0, 100, 100 -> mean 75, var = 30000/4 - 75^2 = 1875, sd 43.3, CV 0.577 (Y).
        *[("gappy", m, 100.0, 10.0) for m in (months[0], months[2], months[3])],
        # lumpy: 400 in January only -> mean 100, var = 160000/4 - 100^2 = 30000, sd 173.2, CV 1.73 (Z).
        ("lumpy", months[0], 400.0, 20.0),
        # gone: a credit note only in the window -> no positive turnover: C and Z.
        ("gone", months[1], -50.0, -5.0),
        # May is the as-of month: counted in lifetime, outside the window.
        ("steady", date(2026, 5, 1), 70.0, 7.0),
    ]
    client, month, net, margin = zip(*rows, strict=True)
    return pl.LazyFrame(
        {
            "client_id": client,
            "turnover_month": month,
            "net_revenue_reporting": net,
            "margin_reporting": margin,
            "invoice_count": [1] * len(rows),
            "last_invoice_date": [m.replace(day=10) for m in month],
        }
    )


def _lines() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "client_id": ["steady", "steady", "lumpy", "gappy"],
            "issue_date": [date(2026, 1, 10), date(2026, 2, 10), date(2026, 1, 10), date(2026, 1, 10)],
            "is_credit_note": [False, False, False, False],
            # Book: net 900 of list 1000 -> depth 0.10. steady 1 - 190/200 = 0.05, lumpy 1 - 520/600 = 0.133,
            # gappy 1 - 190/200 = 0.05.
            "net_amount_reporting": [95.0, 95.0, 520.0, 190.0],
            "list_amount_reporting": [100.0, 100.0, 600.0, 200.0],
        }
    )


def _activities() -> pl.LazyFrame:
    at = datetime(2026, 3, 5, 10)
    return pl.LazyFrame(
        {
            "client_id": ["steady", "lumpy", "lumpy", "lumpy", "prospect", "prospect", "steady"],
            "activity_type": ["meeting", "call", "email", "task", "meeting", "meeting", "call"],
            "occurred_at": [at, at, at, at, at, at, datetime(2025, 6, 1)],
            "duration_minutes": [60, 30, None, None, 120, 180, 600],
        }
    )


def _segments() -> pl.DataFrame:
    return (
        client_segments(_clients(), _turnover(), _lines(), _activities(), AS_OF, FOUR_MONTHS)
        .collect()
        .sort("client_id")
    )


def test_client_segments_classes_by_hand():
    out = {r["client_id"]: r for r in _segments().iter_rows(named=True)}
    assert set(out) == {"steady", "gappy", "lumpy", "prospect", "gone"}
    # Window turnover: steady 400, gappy 300, lumpy 400 (ties by id: lumpy before steady).
    # Cumulative: lumpy 400/1100 = 0.364, steady 800/1100 = 0.727 (A), gappy 1100/1100 = 1 (C).
    assert (out["lumpy"]["abc_turnover_class"], out["steady"]["abc_turnover_class"]) == ("A", "A")
    assert out["gappy"]["abc_turnover_class"] == "C"
    assert out["gone"]["abc_turnover_class"] == "C" and out["prospect"]["abc_turnover_class"] == "C"
    assert out["steady"]["monthly_turnover_cv"] == pytest.approx(0.0)
    assert out["gappy"]["monthly_turnover_cv"] == pytest.approx(1875**0.5 / 75)
    assert out["lumpy"]["monthly_turnover_cv"] == pytest.approx(30000**0.5 / 100)
    assert [out[c]["xyz_class"] for c in ("steady", "gappy", "lumpy", "prospect", "gone")] == [
        "X",
        "Y",
        "Z",
        "Z",
        "Z",
    ]
    assert out["steady"]["abc_xyz_class"] == "AX"
    assert out["steady"]["lifetime_turnover_reporting"] == pytest.approx(1470.0)
    assert out["steady"]["turnover_reporting"] == pytest.approx(400.0)
    # Halves of the window: Jan-Feb vs Mar-Apr. gappy 100 -> 200 (+100 %, growing); lumpy 400 -> 0.
    assert out["gappy"]["growth_trend"] == "growing" and out["lumpy"]["growth_trend"] == "declining"
    assert out["steady"]["growth_trend"] == "stable" and out["prospect"]["growth_trend"] == "inactive"
    assert out["prospect"]["industry"] == "unknown"


def test_client_segments_effort_and_flag():
    out = {r["client_id"]: r for r in _segments().iter_rows(named=True)}
    # steady: one 60-minute meeting in the window (the 600-minute call was in 2025): 1 h.
    # lumpy: 30-minute call + email (0.1 h) + task (0.5 h) without duration = 1.1 h.
    # prospect: 2 h + 3 h = 5 h, no margin.
    assert out["steady"]["effort_hours"] == pytest.approx(1.0)
    assert out["lumpy"]["effort_hours"] == pytest.approx(1.1)
    assert out["lumpy"]["activities_without_duration"] == 2
    assert out["prospect"]["effort_hours"] == pytest.approx(5.0)
    # Margin per hour: steady 160 / 1 = 160, lumpy 20 / 1.1 = 18.2, prospect 0 / 5 = 0.
    assert out["lumpy"]["margin_per_effort_hour"] == pytest.approx(20 / 1.1)
    # P75 of effort (1, 1.1, 5) = 3.05; P25 of margin per hour (0, 18.2, 160) = 9.1: only prospect.
    flagged = {c for c, r in out.items() if r["is_high_effort_low_return"]}
    assert flagged == {"prospect"}


def test_client_segments_headroom_and_price_sensitivity():
    out = {r["client_id"]: r for r in _segments().iter_rows(named=True)}
    # Peers smb / small, active: lumpy 400, steady 400, gappy 300 -> P75 (linear) = 400.
    assert out["gappy"]["peer_benchmark_turnover_reporting"] == pytest.approx(400.0)
    assert out["gappy"]["headroom_reporting"] == pytest.approx(100.0)
    assert out["prospect"]["headroom_reporting"] == pytest.approx(400.0)
    assert out["gone"]["headroom_reporting"] == 0.0  # deleted account: nothing to win
    # Book depth 1 - 900/1000 = 0.10. steady 0.05 <= 0.075: low; lumpy 0.133 >= 0.125: high;
    # gappy 0.05: low; no lines: unknown.
    assert out["steady"]["discount_depth"] == pytest.approx(0.05)
    assert [out[c]["price_sensitivity_class"] for c in ("steady", "lumpy", "gappy", "prospect")] == [
        "low",
        "high",
        "low",
        "unknown",
    ]


def test_client_segments_rfm_scores():
    out = {r["client_id"]: r for r in _segments().iter_rows(named=True)}
    # Invoiced clients: steady (last 2026-05-10), gappy (04-10), lumpy (01-10), gone (02-10); prospect never.
    assert out["prospect"]["rfm_score"] == "000"
    assert out["steady"]["recency_days"] == 5 and out["steady"]["recency_score"] == 4
    assert out["lumpy"]["recency_score"] == 1
