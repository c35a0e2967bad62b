"""Activity norms, the weekly action plan and the deals needing action, on a world small enough to work
out by hand.

One pipeline `sw`: lead (SLA 10 days, probability 0.1) -> proposal (SLA 20, 0.5) -> won / lost; one segment
(smb). Days are counted from Monday 2026-01-05 00:00 (day 0); the as-of date is Sunday 2026-03-01.

    D1 (owner A): lead day 0, proposal day 4, won day 10
    D2 (owner A): lead day 0, lost day 6
    D3 (owner B): lead day 2, proposal day 5, lost day 9
    D4 (owner A): lead 2026-02-01, still open (no activity)
    D5 (owner A): lead 2026-02-27, still open (an email 2026-02-28 12:00)
    D6 (owner B): lead 2026-02-26, still open (no activity)

Activities (hours: the logged minutes, else call 0.25 / email 0.1):
    D1 call day 1 (30 min), meeting day 2 (60), email day 5 (none), call day 11 (30, after it was won)
    D2 call day 3 (30)
    D3 call day 3 (none), task day 6 (60)
Owner C is active in line sw and has no deal and no activity.
"""

import statistics
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from transforms.action_plan import (
    PlanSettings,
    action_plan,
    deals_needing_action,
    owner_throughput,
    owner_week_load,
    quiet_gaps_sql,
)
from transforms.activity_norms import (
    STAYS_SQL,
    NormSettings,
    _exact_sd_sql,
    activities_in_stays_sql,
    activity_effort,
    activity_norms,
)
from transforms.sql import frame_tables

DAY0 = datetime(2026, 1, 5)
AS_OF = date(2026, 3, 1)
NORM_SETTINGS = NormSettings(prior_deals=2.0, min_deals=2)


def day(n: float) -> datetime:
    return DAY0 + timedelta(days=n)


STAGE_ORDER = {"lead": 1, "proposal": 2, "won": 3, "lost": 4}


def transitions() -> pl.LazyFrame:
    paths = {
        "D1": [("lead", day(0)), ("proposal", day(4)), ("won", day(10))],
        "D2": [("lead", day(0)), ("lost", day(6))],
        "D3": [("lead", day(2)), ("proposal", day(5)), ("lost", day(9))],
        "D4": [("lead", datetime(2026, 2, 1))],
        "D5": [("lead", datetime(2026, 2, 27))],
        "D6": [("lead", datetime(2026, 2, 26))],
    }
    rows = []
    for deal_id, path in paths.items():
        for i, (stage, at) in enumerate(path):
            previous = path[i - 1] if i else None
            rows.append(
                {
                    "deal_id": deal_id,
                    "from_stage_id": previous[0] if previous else None,
                    "from_stage_days": (at - previous[1]).total_seconds() / 86_400 if previous else None,
                    "to_stage_id": stage,
                    "to_stage_order": STAGE_ORDER[stage],
                    "changed_at": at,
                    "transition_number": i + 1,
                    "is_to_won": stage == "won",
                    "is_to_lost": stage == "lost",
                }
            )
    return pl.LazyFrame(rows)


def dim_deals() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4", "D5", "D6"],
            "client_id": ["C1"] * 6,
            "business_line": ["sw"] * 6,
            "owner_id": ["A", "A", "B", "A", "A", "B"],
            "created_at": [day(0)] * 3 + [datetime(2026, 2, 1), datetime(2026, 2, 27), datetime(2026, 2, 26)],
            "amount_reporting": [1000.0, 1000.0, 1000.0, 1000.0, 2000.0, 5000.0],
        }
    )


def dim_clients() -> pl.LazyFrame:
    return pl.LazyFrame({"client_id": ["C1"], "segment": ["smb"]})


def stages() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "pipeline_id": ["sw"] * 4,
            "stage_id": ["lead", "proposal", "won", "lost"],
            "stage_name": ["Lead", "Proposal", "Won", "Lost"],
            "stage_order": [1, 2, 3, 4],
            "is_won": [False, False, True, False],
            "is_lost": [False, False, False, True],
            "is_deleted": [False] * 4,
            "sla_days": [10, 20, None, None],
            "win_probability": [0.1, 0.5, 1.0, 0.0],
        }
    )


def activities() -> pl.LazyFrame:
    rows = [
        ("a1", "D1", "A", "call", day(1), 30),
        ("a2", "D1", "A", "meeting", day(2), 60),
        ("a3", "D1", "A", "email", day(5), None),
        ("a4", "D1", "A", "call", day(11), 30),
        ("a5", "D2", "A", "call", day(3), 30),
        ("a6", "D3", "B", "call", day(3), None),
        ("a7", "D3", "B", "task", day(6), 60),
        ("a8", "D5", "A", "email", datetime(2026, 2, 28, 12), None),
    ]
    return pl.LazyFrame(
        rows,
        schema=["activity_id", "deal_id", "owner_id", "activity_type", "occurred_at", "duration_minutes"],
        orient="row",
    )


def owners() -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "owner_id": ["A", "B", "C"],
            "owner_name": ["Ann", "Bob", "Cat"],
            "team": ["sw_west", "sw_east", "sw_west"],
            "business_line": ["sw"] * 3,
            "is_active": [True] * 3,
        }
    )


@pytest.fixture(scope="module")
def norms() -> pl.DataFrame:
    return activity_norms(
        transitions(), dim_deals(), dim_clients(), stages(), activities(), owners(), AS_OF, NORM_SETTINGS
    ).collect()


def norm(frame: pl.DataFrame, stage: str, owner: str = "(all)", segment: str = "(all)", kind: str = "(all)"):
    rows = frame.filter(
        (pl.col("stage_id") == stage)
        & (pl.col("owner_id") == owner)
        & (pl.col("segment") == segment)
        & (pl.col("activity_type") == kind)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def test_norms_worked_out_by_hand(norms):
    # Lead, decided deals D1 (advanced), D2 (lost), D3 (advanced); D4 and D6 are still open: left out.
    # Activities 2 + 1 + 1 = 4 -> 4/3 per deal; hours (0.5 + 1) + 0.5 + 0.25 = 2.25 -> 0.75.
    line = norm(norms, "lead")
    assert (line["decided_deal_count"], line["advanced_deal_count"], line["lost_deal_count"]) == (3, 2, 1)
    assert line["activities_per_deal"] == pytest.approx(4 / 3)
    assert line["hours_per_deal"] == pytest.approx(0.75)
    assert line["activities_per_advanced_deal"] == pytest.approx(1.5)  # (2 + 1) / 2
    assert line["activities_per_lost_deal"] == pytest.approx(1.0)
    assert line["typical_days_in_stage"] == pytest.approx(4.0)  # median of 4, 6, 3 days
    # Sample sd of (2, 1, 1) = 0.57735; 90 % half width 1.6449 x 0.57735 / sqrt(3) = 0.54830.
    assert line["activities_per_deal_high"] - line["activities_per_deal"] == pytest.approx(0.54830, abs=1e-4)
    # Proposal: D1 (won, an email: 0.1 h) and D3 (lost, a task of 60 min); the call after D1 was won is no
    # stage's work.
    proposal = norm(norms, "proposal")
    assert proposal["activities_per_deal"] == pytest.approx(1.0)
    assert proposal["hours_per_deal"] == pytest.approx(0.55)
    assert norm(norms, "proposal", kind="email")["activities_per_deal"] == pytest.approx(0.5)
    # Owner A at lead: n = 2 (3 activities, 2 h), shrunk toward the team's 4/3 and 0.75 with m = 2:
    # (2 x 4/3 + 3) / 4 = 17/12; (2 x 0.75 + 2) / 4 = 0.875. Owner B: n = 1, (8/3 + 1) / 3 = 11/9.
    owner_a = norm(norms, "lead", owner="A", segment="smb")
    assert owner_a["activities_per_deal"] == pytest.approx(17 / 12)
    assert owner_a["hours_per_deal"] == pytest.approx(0.875)
    assert owner_a["prior_level"] == "business_line_segment"
    assert norm(norms, "lead", owner="B")["activities_per_deal"] == pytest.approx(11 / 9)
    assert norm(norms, "lead", owner="B")["is_small_sample"]  # 1 deal < min_deals 2


def test_an_owner_without_history_gets_the_line_norm_flagged(norms):
    for stage in ("lead", "proposal"):
        for kind in ("(all)", "call", "email"):
            new = norm(norms, stage, owner="C", segment="smb", kind=kind)
            team = norm(norms, stage, segment="smb", kind=kind)
            assert not new["has_history"]
            assert new["decided_deal_count"] == 0
            assert new["activities_per_deal"] == team["activities_per_deal"]
            assert new["hours_per_deal"] == team["hours_per_deal"]


def lead_requirements() -> pl.LazyFrame:
    # Period Q2 2026; 14 deals must enter lead 2026-03-02..15 (one a day), 7 proposal 03-09..15, 3.5 won.
    return pl.LazyFrame(
        {
            "period_start": [date(2026, 4, 1)] * 3,
            "period_end": [date(2026, 6, 30)] * 3,
            "business_line": ["sw"] * 3,
            "segment": ["smb"] * 3,
            "stage_number": [1, 2, 3],
            "stage_id": ["lead", "proposal", "won"],
            "deals_needed": [14.0, 7.0, 3.5],
            "leads_needed": [14.0] * 3,
            "must_enter_from_date": [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)],
            "must_enter_by_date": [date(2026, 3, 15), date(2026, 3, 15), date(2026, 3, 22)],
        }
    )


@pytest.fixture(scope="module")
def plan(norms) -> pl.DataFrame:
    return action_plan(
        lead_requirements(),
        norms.lazy(),
        transitions(),
        dim_deals(),
        dim_clients(),
        activities(),
        owners(),
        pl.LazyFrame({"business_line": ["sw"], "segment": ["smb"], "value_per_lead_reporting": [100.0]}),
        AS_OF,
        settings=PlanSettings(throughput_weeks=8),
        norm_settings=NORM_SETTINGS,
    ).collect()


def cell(plan: pl.DataFrame, owner: str, week: date, stage: str, kind: str = "(all)"):
    rows = plan.filter(
        (pl.col("owner_id") == owner)
        & (pl.col("week_start") == week)
        & (pl.col("stage_id") == stage)
        & (pl.col("activity_type") == kind)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def test_plan_worked_out_by_hand(plan):
    # Shares: deals that entered the funnel in the last 12 months: A 4 (D1, D2, D4, D5), B 2 (D3, D6).
    # C is new: 1/3; A and B split the other 2/3 by history 4 : 2 -> A 4/9, B 2/9.
    shares = plan.group_by("owner_id").agg(pl.col("owner_share").first(), pl.col("share_basis").first())
    share = dict(zip(shares["owner_id"], shares["owner_share"], strict=True))
    assert share == pytest.approx({"A": 4 / 9, "B": 2 / 9, "C": 1 / 3})
    assert dict(zip(shares["owner_id"], shares["share_basis"], strict=True))["C"] == "new_owner_equal_share"
    # Lead entries: 7 in the week of 03-02, 7 in the week of 03-09.
    week1, week2 = date(2026, 3, 2), date(2026, 3, 9)
    assert cell(plan, "A", week1, "lead")["deals_entering"] == pytest.approx(7 * 4 / 9)
    # Work: each lead is worked on over 4 days (the typical days), a quarter a day. Week of 03-02: entries of
    # 03-02..05 fully (4), of 03-06, 07, 08 for 3, 2, 1 days (0.75 + 0.5 + 0.25) = 5.5 deal-equivalents.
    a = cell(plan, "A", week1, "lead")
    assert a["deal_work"] == pytest.approx(5.5 * 4 / 9)
    assert a["planned_activities"] == pytest.approx(5.5 * 4 / 9 * 17 / 12)  # A's own norm
    assert a["planned_hours"] == pytest.approx(5.5 * 4 / 9 * 0.875)
    assert not a["is_norm_from_line"]
    c = cell(plan, "C", week1, "lead")
    assert c["is_norm_from_line"]
    assert c["planned_activities"] == pytest.approx(5.5 / 3 * 4 / 3)  # the line's norm 4/3
    # Proposal: typical 5 days; entries 03-09..15: week of 03-09 gets 1+1+1+0.8+0.6+0.4+0.2 = 5.
    assert cell(plan, "B", week2, "proposal")["deal_work"] == pytest.approx(5 * 2 / 9)
    assert cell(plan, "B", week2, "proposal", "task")["planned_hours"] == pytest.approx(
        5 * 2 / 9 * norm_of(plan, "B", "proposal", "task")
    )
    # Won: 3.5 deals to win in the week of 03-16, no stage work.
    won = plan.filter((pl.col("stage_id") == "won") & (pl.col("activity_type") == "(all)"))
    assert won["deals_entering"].sum() == pytest.approx(3.5)
    assert won["planned_hours"].sum() == 0


def norm_of(plan: pl.DataFrame, owner: str, stage: str, kind: str) -> float:
    rows = plan.filter(
        (pl.col("owner_id") == owner) & (pl.col("stage_id") == stage) & (pl.col("activity_type") == kind)
    )
    return rows["hours_per_deal"][0]


def test_plan_reconciles_with_the_requirements(plan):
    totals = (
        plan.filter(pl.col("activity_type") == "(all)")
        .group_by("stage_id")
        .agg(pl.col("deals_entering").sum(), pl.col("deal_work").sum())
    )
    expected = {"lead": 14.0, "proposal": 7.0, "won": 3.5}
    for row in totals.iter_rows(named=True):
        assert row["deals_entering"] == pytest.approx(expected[row["stage_id"]])
        assert row["deal_work"] == pytest.approx(expected[row["stage_id"]])


def test_capacity_and_status_by_hand(plan):
    # A's weeks from the first activity (week of 01-05) to the last complete week before 03-01's week:
    # 01-05 .. 02-16 = 7 weeks; hours 2.1 (0.5 + 1 + 0.1 + 0.5), 0.5 (the call after the win), then five
    # zeros. P80 (linear) of [0, 0, 0, 0, 0, 0.5, 2.1]: position 4.8 -> 0.8 x 0.5 = 0.4 hours.
    a = cell(plan, "A", date(2026, 3, 2), "lead")
    assert a["capacity_hours_per_week"] == pytest.approx(0.4)
    assert a["capacity_activities_per_week"] == pytest.approx(0.8)  # [0 x 5, 1, 4]
    assert a["status"] == "overloaded"
    # C has no activity: the median of A's 0.4 and B's 0 (B: one week of 1.25 h then six zeros).
    c = cell(plan, "C", date(2026, 3, 2), "lead")
    assert c["is_capacity_from_line"]
    assert c["capacity_hours_per_week"] == pytest.approx(0.2)


def test_throughput_statuses_and_shifts_between_owners():
    # Two owners of one line, one busy week each: X's capacity 10 h, Y's 20 h.
    weeks = [date(2026, 1, 5) + timedelta(weeks=i) for i in range(5)]
    effort = pl.LazyFrame(
        {
            "owner_id": ["X"] * 5 + ["Y"] * 5,
            "occurred_at": [datetime.combine(w, datetime.min.time()) for w in weeks] * 2,
            "hours": [10.0] * 5 + [20.0] * 5,
            "activity_id": [str(i) for i in range(10)],
        }
    )
    capacity = owner_throughput(
        effort,
        pl.LazyFrame({"owner_id": ["X", "Y"], "business_line": ["sw", "sw"]}),
        date(2026, 2, 9),
        PlanSettings(throughput_weeks=5),
    ).collect()
    assert capacity.sort("owner_id")["capacity_hours_per_week"].to_list() == pytest.approx([10.0, 20.0])
    # Week of 03-02: X plans 15 h (utilisation 1.5: overloaded, 5 h above capacity), Y 10 h (0.5: feasible,
    # spare up to 0.85 x 20 = 17 h: 7 h). Y takes all of X's 5 h; nothing is left unabsorbed.
    rows = pl.LazyFrame(
        {
            "owner_id": ["X", "Y"],
            "business_line": ["sw", "sw"],
            "week_start": [date(2026, 3, 2)] * 2,
            "activity_type": ["(all)"] * 2,
            "planned_hours": [15.0, 10.0],
            "planned_activities": [0.5, 0.5],  # half the one activity a week both log
        }
    )
    weeks = owner_week_load(rows, capacity.lazy(), PlanSettings()).collect().sort("owner_id")
    x, y = weeks.row(0, named=True), weeks.row(1, named=True)
    assert (x["utilisation"], x["status"], y["utilisation"], y["status"]) == (
        1.5,
        "overloaded",
        0.5,
        "feasible",
    )
    assert (x["shift_to_owners_hours"], x["shift_to_owner_id"], x["unabsorbed_excess_hours"]) == (
        5.0,
        "Y",
        0.0,
    )
    assert y["shift_from_owners_hours"] == pytest.approx(5.0)


def test_the_weekly_load_is_the_same_whatever_the_order_of_its_rows():
    """Two runs on the same data give the same owner weeks to the last bit, however the joins before them
    ordered the rows: the sums are exact, and between receivers with equal spare hours the first by id
    gets the shift. P and Q plan the same hours (so equal spare); R is overloaded."""
    rng = np.random.default_rng(7)
    weeks = [date(2026, 3, 2) + timedelta(weeks=i) for i in range(4)]
    shared = rng.uniform(0.0, 0.05, size=(len(weeks), 150))
    rows = []
    for w, week in enumerate(weeks):
        for owner, hours in (("P", shared[w]), ("Q", shared[w]), ("R", rng.uniform(0.0, 0.2, 150))):
            rows += [(owner, "sw", week, "(all)", float(h), float(h) / 3) for h in hours]
    frame = pl.DataFrame(
        rows,
        schema=[
            "owner_id",
            "business_line",
            "week_start",
            "activity_type",
            "planned_hours",
            "planned_activities",
        ],
        orient="row",
    )
    capacity = pl.LazyFrame(
        {
            "owner_id": ["P", "Q", "R"],
            "capacity_hours_per_week": [10.0, 10.0, 5.0],
            "capacity_activities_per_week": [5.0, 5.0, 2.0],
        }
    )

    def load(rows: pl.DataFrame) -> pl.DataFrame:
        return owner_week_load(rows.lazy(), capacity, PlanSettings()).collect().sort("owner_id", "week_start")

    first = load(frame)
    for seed in range(3):
        assert_frame_equal(load(frame.sample(fraction=1.0, shuffle=True, seed=seed)), first, check_exact=True)
    r = first.filter(pl.col("owner_id") == "R")
    assert (r["shift_to_owners_hours"] > 0).all()
    assert r["shift_to_owner_id"].to_list() == ["P"] * len(weeks)
    assert r["week_planned_hours"].to_list() == pytest.approx(
        frame.filter(pl.col("owner_id") == "R")
        .group_by("week_start")
        .agg(pl.col("planned_hours").sum())
        .sort("week_start")["planned_hours"]
        .to_list(),
        rel=1e-12,
    )


def test_deals_needing_action_by_hand():
    listed = deals_needing_action(
        transitions(),
        dim_deals(),
        dim_clients(),
        stages(),
        activities(),
        owners(),
        AS_OF,
        forecast_deals=pl.LazyFrame({"deal_id": ["D6"], "expected_won_amount": [300.0]}),
        norm_settings=NORM_SETTINGS,
    ).collect()
    assert listed["deal_id"].to_list() == ["D4", "D6"]  # D5 is fine; closed deals never listed
    d4 = listed.row(0, named=True)
    # D4: in lead since 02-01 = 28 days; SLA 10 -> +18. Usual time: completed lead stays 4, 6, 3 days (3 < 10
    # stays: the line's), P80 = 4 + 0.6 x 2 = 5.2 -> +22.8. Idle since entry 28 days; the quiet gaps of the
    # lead stays: D1 1, 1, 2; D2 3, 3; D3 1, 2 -> P80 of [1, 1, 1, 2, 2, 3, 3] = 2.8 -> +25.2.
    assert d4["days_in_stage"] == 28
    assert d4["sla_overdue_days"] == pytest.approx(18)
    assert d4["usual_days_in_stage"] == pytest.approx(5.2)
    assert d4["usual_time_overdue_days"] == pytest.approx(22.8)
    assert d4["normal_idle_days"] == pytest.approx(2.8)
    assert d4["idle_overdue_days"] == pytest.approx(25.2)
    assert d4["expected_value_at_risk_reporting"] == pytest.approx(100.0)  # 1000 x 0.1
    assert d4["value_basis"] == "amount_x_stage_probability"
    assert d4["overdue_summary"] == "SLA +18.0d; usual time +22.8d; idle +25.2d"
    # D6: 3 days in lead without activity: only idle (+0.2); its value comes from the forecast.
    d6 = listed.row(1, named=True)
    assert (d6["is_sla_breached"], d6["is_past_usual_time"], d6["is_idle"]) == (False, False, True)
    assert d6["idle_overdue_days"] == pytest.approx(0.2)
    assert d6["expected_value_at_risk_reporting"] == 300.0
    assert d6["owner_name"] == "Bob"


def test_effort_uses_the_configured_hours_without_duration():
    hours = activity_effort(activities(), AS_OF, NORM_SETTINGS).collect()
    by_id = dict(zip(hours["activity_id"], hours["hours"], strict=True))
    assert by_id["a1"] == 0.5 and by_id["a3"] == 0.1 and by_id["a6"] == 0.25


def test_an_activity_after_two_stage_changes_at_one_instant_belongs_to_the_later_one():
    # D7 moves lead -> proposal at day 3, twice recorded at the same instant (transition 2 and 3: a
    # zero-length stay in lead, then proposal), and is lost at day 7. Activities: before the first event
    # (day -1: the first stay, lead), at the instant (day 3: proposal, the later event's), inside
    # proposal (day 5), after the loss (day 8: no stage).
    path = [("lead", day(0), 1), ("lead", day(3), 2), ("proposal", day(3), 3), ("lost", day(7), 4)]
    events = pl.LazyFrame(
        {
            "deal_id": ["D7"] * 4,
            "to_stage_id": [p[0] for p in path],
            "changed_at": [p[1] for p in path],
            "transition_number": [p[2] for p in path],
            "is_to_won": [False] * 4,
            "is_to_lost": [p[0] == "lost" for p in path],
        }
    )
    effort = pl.LazyFrame(
        {
            "deal_id": ["D7"] * 4,
            "activity_type": ["call"] * 4,
            "hours": [1.0] * 4,
            "occurred_at": [day(-1), day(3), day(5), day(8)],
        }
    )
    with frame_tables({"events": events, "effort": effort}) as t:
        t.define("stays", STAYS_SQL)
        located = t.frame(f"select * from ({activities_in_stays_sql()}) order by occurred_at")
        # The quiet gaps of the two completed stays entered at day 3: each stay its own.
        t.materialize(
            "completed",
            "select deal_id, entered_at, exited_at, 'sw' as business_line, 'smb' as segment, stage_id "
            "from {stays} where not is_terminal and entered_at = " + f"TIMESTAMP '{day(3)}'",
        )
        gaps = t.frame(f"select stage_id, gap_days from ({quiet_gaps_sql()})")
    assert located["stage_id"].to_list() == ["lead", "proposal", "proposal"]
    assert located["stay_entered_at"].to_list() == [day(0), day(3), day(3)]
    # lead [3, 3): one gap of 0; proposal [3, 7) with activities at 3 and 5: 0, 2, 2.
    by_stage = gaps.group_by("stage_id").agg(pl.col("gap_days").sort()).sort("stage_id")
    assert by_stage.rows() == [("lead", [0.0]), ("proposal", [0.0, 2.0, 2.0])]


def test_norm_deviations_come_from_exact_sums():
    """The norms' standard deviations come from exact integer sums of whole seconds (so every run gives
    the same figures): a group of equal efforts gives exactly 0 (7-minute calls, 0.11666... h), others
    the textbook sample deviation to the last digit, and a single row none (as stddev_samp)."""
    groups = pl.DataFrame(
        {
            "grp": ["equal"] * 4 + ["varied"] * 5 + ["single"],
            "seconds": [420] * 4 + [0, 420, 3600, 5400, 900] + [1800],
        }
    )
    with frame_tables({"rows": groups}) as t:
        found = dict(
            t.frame(
                f"select grp, {_exact_sd_sql('seconds')} / 3600 as sd from {{rows}} group by grp"
            ).iter_rows()
        )
    assert found["equal"] == 0.0
    assert found["varied"] == pytest.approx(statistics.stdev([0, 420 / 3600, 1.0, 1.5, 0.25]), rel=1e-15)
    assert found["single"] is None
