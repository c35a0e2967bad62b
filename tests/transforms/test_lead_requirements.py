"""lead_requirements: shrinkage toward the business line, and the reverse funnel, on literal frames."""

from datetime import date, datetime

import polars as pl
import pytest

from tests.transforms.funnel_frames import STAGES, clients, deals, targets, transitions
from transforms.lead_requirements import RateSettings, lead_requirements

AS_OF = date(2024, 6, 30)


def history(won: bool, day: int) -> list[tuple[str, datetime]]:
    start = datetime(2024, 3, day)
    if won:
        return [
            ("lead", start),
            ("qual", datetime(2024, 3, day + 2)),
            ("prop", datetime(2024, 3, day + 4)),
            ("won", datetime(2024, 3, day + 10)),
        ]
    return [("lead", start), ("lost", datetime(2024, 3, day + 1))]


# smb: 10 leads, 6 won straight through, 4 lost at lead; enterprise: 2 leads, both lost at lead;
# public_sector: a target but no deal at all.
HISTORIES = {f"S{i}": history(i < 6, i + 1) for i in range(10)} | {
    f"E{i}": history(False, i + 1) for i in range(2)
}
DEALS = [
    (k, "c_smb" if k.startswith("S") else "c_ent", datetime(2024, 3, 1), 100.0 if k < "S3" else 200.0)
    for k in HISTORIES
]
Q3 = (date(2024, 7, 1), date(2024, 9, 30))
TARGETS = [(*Q3, "p", "smb", 3000.0), (*Q3, "p", "enterprise", 1000.0), (*Q3, "p", "public_sector", 500.0)]


@pytest.fixture(scope="module")
def requirements() -> pl.DataFrame:
    return lead_requirements(
        transitions(HISTORIES),
        deals(DEALS),
        clients({"c_smb": "smb", "c_ent": "enterprise"}),
        STAGES.lazy(),
        targets(TARGETS),
        AS_OF,
        RateSettings(prior_strength=20.0, amount_prior_deals=5.0),
    ).collect()


def lead_row(frame: pl.DataFrame, segment: str) -> dict:
    return frame.filter((pl.col("segment") == segment) & (pl.col("stage_id") == "lead")).row(0, named=True)


def test_small_segments_shrink_toward_their_business_line(requirements):
    # Line at lead: 6 advanced of 12 decided, with half a deal each way: 6.5 / 13 = 0.5.
    smb, ent, public = (lead_row(requirements, s) for s in ("smb", "enterprise", "public_sector"))
    # smb: (20 x 0.5 + 6) / (20 + 10) = 16/30; observed 6/10.
    assert smb["step_conversion"] == pytest.approx(16 / 30)
    assert (smb["step_conversion_observed"], smb["effective_n"]) == (0.6, 30.0)
    # enterprise: 0 of 2 observed, shrunk to (10 + 0) / 22, worth 22 deals.
    assert ent["step_conversion"] == pytest.approx(10 / 22)
    assert ent["effective_n"] == 22.0
    # No deal at all: the line's rate, worth the prior alone; the interval says how little is known.
    assert (public["step_conversion"], public["effective_n"], public["decided_deal_count"]) == (0.5, 20.0, 0)
    assert (
        public["step_conversion_high"] - public["step_conversion_low"]
        > smb["step_conversion_high"] - smb["step_conversion_low"]
    )
    assert smb["step_conversion_low"] < smb["step_conversion"] < smb["step_conversion_high"]


def test_reverse_funnel_gives_back_the_target(requirements):
    # leads x conversion to won (first stage) x average won deal = target, for every segment.
    first = requirements.filter(pl.col("stage_number") == 1)
    assert (
        first["leads_needed"] * first["conversion_to_won"] * first["average_won_deal_reporting"]
    ).to_list() == (pytest.approx(first["revenue_target_reporting"].to_list()))
    # And deals needed at each stage x its conversion to won = won deals needed.
    assert (requirements["deals_needed"] * requirements["conversion_to_won"]).to_list() == pytest.approx(
        requirements["won_deals_needed"].to_list()
    )


def test_average_won_deal_and_timing(requirements):
    smb = lead_row(requirements, "smb")
    # Won smb deals S0..S5: amounts 100, 100, 100, 200, 200, 200 -> line average 150 (only smb wins);
    # shrunk: (900 + 5 x 150) / (6 + 5) = 150.
    assert smb["average_won_deal_reporting"] == pytest.approx(150.0)
    # Every won deal takes 10 days from lead to won: must enter lead 10 days before the period.
    assert smb["days_to_won"] == pytest.approx(10.0)
    assert (smb["must_enter_from_date"], smb["must_enter_by_date"]) == (date(2024, 6, 21), date(2024, 9, 20))
    # Nothing open, nothing won in Q3 yet: the whole target is the gap; no recent leads (March only).
    assert smb["remaining_gap_reporting"] == 3000.0 and smb["recent_inflow_per_month"] == 0.0
