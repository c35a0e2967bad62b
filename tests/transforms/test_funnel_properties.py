"""Invariants of funnel_conversion on random stage histories (hypothesis)."""

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transforms.funnel_frames import STAGES, clients, deals, targets, transitions
from transforms.funnel import funnel_conversion, rates_out_of_range, rising_down_the_funnel

STAGE_IDS = ["lead", "qual", "prop", "won", "lost"]
AS_OF = date(2024, 12, 31)

history = st.lists(
    st.tuples(st.sampled_from(STAGE_IDS), st.integers(min_value=1, max_value=60)), min_size=1, max_size=7
)


def dated(steps: list[tuple[str, int]], start_day: int) -> list[tuple[str, datetime]]:
    at, events = datetime(2024, 1, 1) + timedelta(days=start_day), []
    for stage, gap in steps:
        if events and events[-1][0] == stage:
            continue  # the mart has no repeated event for the same stage
        events.append((stage, at))
        at += timedelta(days=gap)
    return [e for e in events if e[1].date() <= AS_OF]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(history, st.integers(0, 300), st.sampled_from(["a", "b"])), min_size=1, max_size=12)
)
def test_funnel_invariants(cases):
    histories, rows = {}, []
    for i, (steps, start, client) in enumerate(cases):
        events = dated(steps, start)
        if events:
            histories[f"D{i}"] = events
            rows.append((f"D{i}", client, events[0][1], 10.0 * (i + 1)))
    if not histories:
        return
    frame = funnel_conversion(
        transitions(histories),
        deals(rows),
        clients({"a": "smb", "b": "mid"}),
        STAGES.lazy(),
        targets([]),
        AS_OF,
    ).collect()
    rates = [
        "step_conversion",
        "cumulative_conversion",
        "conversion_to_won",
        "win_rate_count",
        "win_rate_amount",
    ]
    assert rates_out_of_range(frame, rates).height == 0
    assert (
        rising_down_the_funnel(frame, ["period_grain", "period_start", "business_line", "segment"]).height
        == 0
    )
    open_rows = frame.filter(pl.col("stage_id") != "won")
    assert (
        open_rows["advanced_count"] + open_rows["dropped_count"] + open_rows["pending_count"]
        == open_rows["reached_count"]
    ).all()
    # Counts are additive over periods: months and quarters add up to the same totals, and the strict
    # funnel never holds more deals than the any-stage one.
    totals = frame.group_by("period_grain", "business_line", "segment", "stage_id").agg(
        pl.col("reached_count", "reached_strict_count", "won_count").sum()
    )
    by_grain = totals.pivot(
        "period_grain", index=["business_line", "segment", "stage_id"], values="reached_count"
    )
    assert (by_grain["month"] == by_grain["quarter"]).all()
    assert (totals["reached_strict_count"] <= totals["reached_count"]).all()
    # The all-segments total is the sum of the segments.
    months = frame.filter((pl.col("period_grain") == "month") & (pl.col("business_line") == "p"))
    parts = (
        months.filter(pl.col("segment") != "(all)")
        .group_by("period_start", "stage_id")
        .agg(pl.col("reached_count").sum())
    )
    whole = months.filter(pl.col("segment") == "(all)").select("period_start", "stage_id", "reached_count")
    joined = parts.join(whole, on=["period_start", "stage_id"])
    assert (joined["reached_count"] == joined["reached_count_right"]).all()


def test_funnel_figures_do_not_depend_on_the_order_of_the_rows():
    """Two runs on the same data give the same funnel tables to the last bit, whatever order the rows
    reach DuckDB in: amounts, days and shares are summed exactly (`transforms.exact`), not as floats
    whose last digits follow the order of the additions."""
    rng = np.random.default_rng(11)
    histories, rows = {}, []
    for i in range(400):
        steps = [(s, int(g)) for s, g in zip(["lead", "qual", "prop"], rng.integers(1, 40, 3), strict=True)]
        steps = [*steps[: int(rng.integers(1, 4))], (str(rng.choice(["won", "lost"])), 1)]
        events = dated(steps, int(rng.integers(0, 300)))
        histories[f"D{i}"] = events
        amount = round(float(rng.uniform(100, 90_000)), 4)
        rows.append((f"D{i}", str(rng.choice(["a", "b"])), events[0][1], amount))

    def build(order: np.ndarray) -> pl.DataFrame:
        shuffled = transitions(histories).collect()
        shuffled = shuffled[np.argsort(rng.random(shuffled.height)) if order is not None else slice(None)]
        chosen = [rows[i] for i in order] if order is not None else rows
        frame = funnel_conversion(
            shuffled.lazy(),
            deals(chosen),
            clients({"a": "smb", "b": "mid"}),
            STAGES.lazy(),
            targets([]),
            AS_OF,
        ).collect()
        return frame.sort("period_grain", "period_start", "business_line", "segment", "stage_id")

    first = build(None)
    assert first["average_won_deal_reporting"].drop_nulls().len() > 10
    for _ in range(3):
        again = build(rng.permutation(len(rows)))
        assert again.equals(first)
