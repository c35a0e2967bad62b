"""funnel_conversion and funnel_cohorts on hand-made histories, answers worked out by hand."""

from datetime import date, datetime

import polars as pl
import pytest

from tests.transforms.funnel_frames import STAGES, clients, deals, targets, transitions
from transforms.funnel import funnel_cohorts, funnel_conversion, rates_out_of_range, rising_down_the_funnel

AS_OF = date(2024, 2, 15)


def d(month: int, day: int) -> datetime:
    return datetime(2024, month, day)


# D1 wins straight through; D2 skips qual and is lost; D3 moves back from prop to qual and is lost;
# D4 is lost from lead and reopened (open now); D5 enters at qual in February and is still open.
HISTORIES = {
    "D1": [("lead", d(1, 2)), ("qual", d(1, 5)), ("prop", d(1, 10)), ("won", d(1, 20))],
    "D2": [("lead", d(1, 3)), ("prop", d(1, 8)), ("lost", d(1, 15))],
    "D3": [("lead", d(1, 4)), ("qual", d(1, 6)), ("prop", d(1, 9)), ("qual", d(1, 12)), ("lost", d(1, 20))],
    "D4": [("lead", d(1, 5)), ("lost", d(1, 7)), ("lead", d(1, 20))],
    "D5": [("qual", d(2, 10))],
}
DEALS = [
    ("D1", "c1", d(1, 1), 100.0),
    ("D2", "c1", d(1, 1), 50.0),
    ("D3", "c1", d(1, 1), 30.0),
    ("D4", "c1", d(1, 1), None),
    ("D5", "c1", d(2, 1), 20.0),
]
# A target for a segment without any deal: it must still get rows.
TARGETS = [(date(2024, 4, 1), date(2024, 6, 30), "p", "enterprise", 1000.0)]


@pytest.fixture(scope="module")
def conversion() -> pl.DataFrame:
    return funnel_conversion(
        transitions(HISTORIES), deals(DEALS), clients({"c1": "smb"}), STAGES.lazy(), targets(TARGETS), AS_OF
    ).collect()


def rows(frame: pl.DataFrame, start: date, segment: str = "smb", grain: str = "month") -> dict[str, dict]:
    selected = frame.filter(
        (pl.col("period_grain") == grain)
        & (pl.col("period_start") == start)
        & (pl.col("business_line") == "p")
        & (pl.col("segment") == segment)
    )
    return {row["stage_id"]: row for row in selected.iter_rows(named=True)}


def test_reach_any_stage_and_strict_with_skip_backward_and_reopen(conversion):
    jan = rows(conversion, date(2024, 1, 1))
    # Any-stage: lead D1-D4; qual D1, D3 and D2 (skipped it, reached prop); prop D1-D3; won D1.
    assert [jan[s]["reached_count"] for s in ("lead", "qual", "prop", "won")] == [4, 3, 3, 1]
    # Strict: D2 never entered qual, so it drops out from qual on; D3's move back does not count twice.
    assert [jan[s]["reached_strict_count"] for s in ("lead", "qual", "prop", "won")] == [4, 2, 2, 1]
    # D5 entered at qual in February: it reached lead (any-stage) then, but not strictly.
    feb = rows(conversion, date(2024, 2, 1))
    assert (feb["lead"]["reached_count"], feb["lead"]["reached_strict_count"]) == (1, 0)


def test_open_deals_are_pending_not_lost(conversion):
    jan = rows(conversion, date(2024, 1, 1))
    # lead: D1, D2, D3 advanced; D4 (reopened, open) is pending, not dropped -> step 3/3.
    assert (jan["lead"]["advanced_count"], jan["lead"]["dropped_count"], jan["lead"]["pending_count"]) == (
        3,
        0,
        1,
    )
    assert jan["lead"]["step_conversion"] == 1.0
    # prop: D1 won, D2 and D3 lost -> 1/3; chained: lead 1 x 1 x 1/3, cumulative to won 1 x 1 x 1/3.
    assert jan["prop"]["step_conversion"] == pytest.approx(1 / 3)
    assert jan["lead"]["conversion_to_won"] == pytest.approx(1 / 3)
    assert jan["won"]["cumulative_conversion"] == pytest.approx(1 / 3)
    # February: D5's qual is undecided, so its step and everything chained through it are unknown.
    feb = rows(conversion, date(2024, 2, 1))
    assert feb["qual"]["step_conversion"] is None and feb["lead"]["conversion_to_won"] is None


def test_time_in_stage_counts_every_completed_spell(conversion):
    jan = rows(conversion, date(2024, 1, 1))
    # lead spells 3, 5, 2, 2 days -> median 2.5, mean 3; qual 5, 3 and D3's second stay 8 -> median 5.
    assert jan["lead"]["time_in_stage_median_days"] == pytest.approx(2.5)
    assert jan["lead"]["time_in_stage_mean_days"] == pytest.approx(3.0)
    assert (jan["qual"]["completed_spell_count"], jan["qual"]["time_in_stage_median_days"]) == (3, 5.0)


def test_stage_fill_and_sla_breaches_at_period_end(conversion):
    jan = rows(conversion, date(2024, 1, 1))
    # End of 31 Jan: only D4 is open, in lead since 20 Jan: 11 days > SLA 5.
    assert (jan["lead"]["open_deal_count"], jan["lead"]["sla_breach_count"]) == (1, 1)
    assert jan["qual"]["open_deal_count"] == 0
    # Running month, measured at the as-of date: D5 in qual since 10 Feb, 5 days <= SLA 10.
    feb = rows(conversion, date(2024, 2, 1))
    assert (feb["qual"]["open_deal_count"], feb["qual"]["sla_breach_count"]) == (1, 0)
    assert feb["qual"]["open_amount_reporting"] == 20.0


def test_stage_fill_counts_a_stay_at_every_period_end_it_spans():
    """A stay is open at the end of each month and quarter it spans, the day it is left at midnight
    included (the fill is taken at the end of the day), and at none after."""
    frame = funnel_conversion(
        transitions({"D1": [("lead", d(1, 20)), ("qual", d(3, 1))]}),
        deals([("D1", "c1", d(1, 1), 10.0)]),
        clients({"c1": "smb"}),
        STAGES.lazy(),
        targets([]),
        date(2024, 4, 15),
    ).collect()

    def fill(grain: str, start: date) -> tuple[int, int]:
        stages = rows(frame, start, grain=grain)
        return stages["lead"]["open_deal_count"], stages["qual"]["open_deal_count"]

    assert [fill("month", date(2024, m, 1)) for m in (1, 2, 3, 4)] == [(1, 0), (1, 0), (0, 1), (0, 1)]
    assert [fill("quarter", date(2024, m, 1)) for m in (1, 4)] == [(0, 1), (0, 1)]


def test_deal_figures_of_the_period(conversion):
    lead = rows(conversion, date(2024, 1, 1))["lead"]
    # Closed in January: D1 won (100), D2 and D3 lost (50 + 30); D4's loss was undone by its reopen.
    assert (lead["won_count"], lead["lost_count"]) == (1, 2)
    assert lead["win_rate_count"] == pytest.approx(1 / 3)
    assert lead["win_rate_amount"] == pytest.approx(100 / 180)
    assert lead["sales_cycle_median_days"] == pytest.approx(19.0)  # created 1 Jan, won 20 Jan
    # Velocity: 1 open deal x 1/3 x 100 / 19 days.
    assert lead["pipeline_velocity_reporting_per_day"] == pytest.approx(100 / 3 / 19)


def test_zero_deal_segment_and_totals_are_explicit_rows(conversion):
    empty = rows(conversion, date(2024, 1, 1), segment="enterprise")
    assert set(empty) == {"lead", "qual", "prop", "won"}
    assert all(r["reached_count"] == 0 and r["step_conversion"] is None for r in empty.values())
    total = rows(conversion, date(2024, 1, 1), segment="(all)")
    assert total["lead"]["reached_count"] == 4
    everything = conversion.filter(
        (pl.col("business_line") == "(all)")
        & (pl.col("segment") == "(all)")
        & (pl.col("period_grain") == "quarter")
    )
    # One pipeline: the all-lines funnel shows all its stages; the quarter adds up the months.
    assert everything.filter(pl.col("stage_id") == "lead")["reached_count"].to_list() == [5]


def test_checks_find_nothing_on_a_good_table_and_catch_a_widening_one(conversion):
    group = ["period_grain", "period_start", "business_line", "segment"]
    assert rates_out_of_range(conversion, ["step_conversion", "conversion_to_won"]).height == 0
    assert rising_down_the_funnel(conversion, group).height == 0
    broken = conversion.with_columns(
        conversion_to_won=pl.when(pl.col("stage_id") == "won").then(0.1).otherwise("conversion_to_won")
    )
    assert rising_down_the_funnel(broken, group).height > 0


def test_cohorts_do_not_count_open_deals_as_lost():
    cohorts = funnel_cohorts(
        transitions(HISTORIES),
        deals(DEALS),
        clients({"c1": "smb"}),
        targets(TARGETS),
        AS_OF,
        maturity_days=10,
    ).collect()
    jan = cohorts.filter((pl.col("cohort_month") == date(2024, 1, 1)) & (pl.col("segment") == "smb")).row(
        0, named=True
    )
    # D1 won, D2 and D3 lost, D4 open: 1/4, 2/4, 1/4. Watched 15 days since 31 Jan >= 10: mature.
    assert (jan["won_share_observed"], jan["lost_share_observed"], jan["open_share"]) == (0.25, 0.5, 0.25)
    assert jan["is_mature"]
    feb = cohorts.filter((pl.col("cohort_month") == date(2024, 2, 1)) & (pl.col("segment") == "smb")).row(
        0, named=True
    )
    assert (feb["deal_count"], feb["open_count"], feb["is_mature"]) == (1, 1, False)


def test_aalen_johansen_credits_censored_deals():
    # Cohort January, as of 29 Feb: A won after 10 days, B lost after 20, D won after 50 days; C entered
    # on 25 Jan and is still open (censored after 36 days). At risk: 4, then 3, then (C censored) 1.
    # won: 1/4 + (3/4 x 2/3) x 1/1 = 3/4; lost: (3/4) x 1/3 = 1/4. Observed won share is only 2/4.
    histories = {
        "A": [("lead", d(1, 1)), ("won", d(1, 11))],
        "B": [("lead", d(1, 1)), ("lost", d(1, 21))],
        "C": [("lead", d(1, 25))],
        "D": [("lead", d(1, 1)), ("won", d(2, 20))],
    }
    rows_ = [(k, "c1", d(1, 1), 10.0) for k in histories]
    cohort = (
        funnel_cohorts(
            transitions(histories), deals(rows_), clients({"c1": "smb"}), targets([]), date(2024, 2, 29)
        )
        .collect()
        .filter((pl.col("cohort_month") == date(2024, 1, 1)) & (pl.col("segment") == "smb"))
        .row(0, named=True)
    )
    assert cohort["estimate_horizon_days"] == 60  # 1 Jan to the end of 29 Feb
    assert cohort["won_share_estimated"] == pytest.approx(0.75)
    assert cohort["lost_share_estimated"] == pytest.approx(0.25)
    assert cohort["won_share_observed"] == 0.5
