"""The lead-mix programme of segment_focus on numbers small enough to solve by hand."""

import polars as pl
import pytest

from transforms.segment_focus import FocusSettings, optimise_lead_mix

# One line, two segments: a lead is worth 100 in A and 50 in B; both get 10 leads a month today.
CELLS = pl.DataFrame(
    {
        "business_line": ["p", "p"],
        "segment": ["a", "b"],
        "value_per_lead_reporting": [100.0, 50.0],
        "current_inflow_per_month": [10.0, 10.0],
    }
)
SETTINGS = FocusSettings(floor_share=0.5, ceiling_factor=2.0)


def test_fewest_leads_go_to_the_most_valuable_segment_first():
    # Gap 1500 a month, bounds 5..20 each: B stays at its floor (5 x 50 = 250), A covers the rest:
    # (1500 - 250) / 100 = 12.5 leads; 17.5 in all, fewer than today's 20.
    leads, _, reachable = optimise_lead_mix(CELLS.with_columns(gap_per_month=pl.lit(1500.0)), 20.0, SETTINGS)
    assert reachable
    assert leads.tolist() == pytest.approx([12.5, 5.0])


def test_out_of_reach_target_maximises_revenue_within_capacity():
    # Gap 5000 cannot be reached with 20 leads: A takes everything B's floor leaves (15), B keeps 5.
    leads, message, reachable = optimise_lead_mix(
        CELLS.with_columns(gap_per_month=pl.lit(5000.0)), 20.0, SETTINGS
    )
    assert not reachable and "out of reach" in message
    assert leads.tolist() == pytest.approx([15.0, 5.0])
