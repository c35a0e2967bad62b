"""Ground-truth parameters of the synthetic sales world.

Every behaviour the generator plants (funnel conversion, stage durations, deal sizes, seasonality,
crisis effects, price sensitivity, effort) is configured here, recorded in `manifest.json`, and is
what later tests and analyses compare their estimates against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BUSINESS_LINES = ("software", "services", "hardware")
SEGMENTS = ("smb", "mid_market", "enterprise", "public_sector")
CHANNELS = ("inbound", "outbound", "referral", "partner", "event", "existing_client")


@dataclass(frozen=True)
class PipelineParams:
    """One pipeline (one per business line): its ordered open stages, then terminal won and lost."""

    business_line: str
    open_stages: tuple[str, ...]
    stage_names: tuple[str, ...]
    probabilities: tuple[float, ...]
    sla_days: tuple[int, ...]
    base_median_days: tuple[float, ...]
    """Median days a deal stays in each open stage, before the segment's duration multiplier."""
    categories: tuple[str, ...]
    category_weights: tuple[float, ...]
    recurring_categories: tuple[str, ...]
    recurring_share: float
    """Share of won deals that are followed by monthly recurring invoices."""


@dataclass(frozen=True)
class SegmentParams:
    """A sales segment: its share of clients, speed, size, and price behaviour."""

    name: str
    client_share: float
    duration_multiplier: float
    mean_discount: float
    """Price sensitivity: mean discount depth 1 - unit_price / list_price granted to the segment."""
    price_elasticity: float
    """Volume response: quantity scales with (1 - discount) ** -price_elasticity."""
    employees_median: int
    activity_multiplier: float
    channel_shares: tuple[float, ...]
    """Share of deals per channel, in the order of `CHANNELS`."""


@dataclass(frozen=True)
class IndustryParams:
    """An industry profile: its share of lead inflow and how it behaves in the crisis window."""

    name: str
    lead_share: float
    crisis_group: str
    """`crisis_falling` or `crisis_holding`."""
    crisis_inflow_change: float
    """Relative change of lead inflow inside the crisis window (-0.4 = 40 % fewer leads)."""
    crisis_win_change: float
    """Relative change of the probability to win a deal whose stage decisions fall in the window."""
    crisis_turnover_change: float
    """Relative change of recurring invoice volume issued inside the window."""


@dataclass(frozen=True)
class RegionParams:
    """A sales region and the currency its clients are billed in."""

    name: str
    share: float
    currency: str


@dataclass(frozen=True)
class CategoryParams:
    """A product category: list price range (EUR) and unit cost as a share of list price."""

    name: str
    list_price_min: float
    list_price_max: float
    cost_ratio: float
    fractional_quantity: bool
    """True when quantities are days or hours (half units allowed), False for whole units."""


def _pipelines() -> tuple[PipelineParams, ...]:
    return (
        PipelineParams(
            business_line="software",
            open_stages=("lead", "qualified", "meeting", "proposal", "negotiation"),
            stage_names=("Lead", "Qualified", "Meeting held", "Proposal sent", "Negotiation"),
            probabilities=(0.05, 0.15, 0.3, 0.5, 0.75),
            sla_days=(14, 21, 21, 30, 30),
            base_median_days=(6.0, 10.0, 12.0, 15.0, 12.0),
            categories=("license", "subscription", "support"),
            category_weights=(0.35, 0.45, 0.2),
            recurring_categories=("subscription", "support"),
            recurring_share=0.85,
        ),
        PipelineParams(
            business_line="services",
            open_stages=("lead", "qualified", "scoping", "proposal"),
            stage_names=("Lead", "Qualified", "Scoping workshop", "Proposal sent"),
            probabilities=(0.1, 0.25, 0.45, 0.7),
            sla_days=(10, 21, 30, 30),
            base_median_days=(5.0, 12.0, 18.0, 14.0),
            categories=("consulting", "implementation", "training"),
            category_weights=(0.45, 0.4, 0.15),
            recurring_categories=("consulting", "training"),
            recurring_share=0.6,
        ),
        PipelineParams(
            business_line="hardware",
            open_stages=("lead", "qualified", "demo_request", "quote", "negotiation"),
            stage_names=("Lead", "Qualified", "Demo requested", "Quote sent", "Negotiation"),
            probabilities=(0.05, 0.2, 0.35, 0.55, 0.8),
            sla_days=(7, 14, 21, 21, 21),
            base_median_days=(4.0, 7.0, 10.0, 9.0, 8.0),
            categories=("devices", "accessories", "maintenance"),
            category_weights=(0.55, 0.25, 0.2),
            recurring_categories=("maintenance", "accessories"),
            recurring_share=0.7,
        ),
    )


def _segments() -> tuple[SegmentParams, ...]:
    return (
        SegmentParams("smb", 0.45, 0.6, 0.05, 1.8, 40, 0.7, (0.35, 0.25, 0.1, 0.1, 0.1, 0.1)),
        SegmentParams("mid_market", 0.3, 1.0, 0.1, 1.2, 400, 1.0, (0.25, 0.3, 0.12, 0.13, 0.1, 0.1)),
        SegmentParams("enterprise", 0.15, 1.6, 0.18, 0.6, 6000, 1.5, (0.15, 0.35, 0.15, 0.15, 0.05, 0.15)),
        SegmentParams("public_sector", 0.1, 2.0, 0.12, 0.3, 2500, 1.2, (0.3, 0.2, 0.1, 0.2, 0.1, 0.1)),
    )


def _industries() -> tuple[IndustryParams, ...]:
    return (
        IndustryParams("automotive", 0.14, "crisis_falling", -0.45, -0.4, -0.45),
        IndustryParams("retail", 0.14, "crisis_falling", -0.4, -0.35, -0.4),
        IndustryParams("hospitality", 0.08, "crisis_falling", -0.5, -0.45, -0.5),
        IndustryParams("construction", 0.1, "crisis_falling", -0.35, -0.3, -0.35),
        IndustryParams("healthcare", 0.14, "crisis_holding", 0.0, -0.02, 0.0),
        IndustryParams("utilities", 0.1, "crisis_holding", -0.03, 0.0, -0.03),
        IndustryParams("financial_services", 0.16, "crisis_holding", -0.05, -0.05, -0.05),
        IndustryParams("it_services", 0.14, "crisis_holding", 0.0, 0.0, 0.0),
    )


def _step_rates() -> dict[str, dict[str, tuple[float, ...]]]:
    # Probability to advance from open stage k to k+1 (the last entry: to won), per line x segment.
    return {
        "software": {
            "smb": (0.77, 0.79, 0.77, 0.67, 0.69),
            "mid_market": (0.82, 0.82, 0.77, 0.69, 0.67),
            "enterprise": (0.87, 0.85, 0.79, 0.67, 0.62),
            "public_sector": (0.89, 0.87, 0.82, 0.72, 0.57),
        },
        "services": {
            "smb": (0.79, 0.77, 0.72, 0.67),
            "mid_market": (0.85, 0.81, 0.75, 0.69),
            "enterprise": (0.89, 0.85, 0.77, 0.65),
            "public_sector": (0.92, 0.87, 0.79, 0.59),
        },
        "hardware": {
            "smb": (0.82, 0.82, 0.79, 0.75, 0.77),
            "mid_market": (0.85, 0.83, 0.79, 0.73, 0.73),
            "enterprise": (0.87, 0.85, 0.77, 0.69, 0.67),
            "public_sector": (0.92, 0.87, 0.81, 0.73, 0.62),
        },
    }


def _deal_sizes() -> dict[str, dict[str, tuple[float, float]]]:
    # (median EUR list value, lognormal sigma) of a deal, per line x segment.
    return {
        "software": {
            "smb": (8_000.0, 0.6),
            "mid_market": (35_000.0, 0.7),
            "enterprise": (180_000.0, 0.8),
            "public_sector": (90_000.0, 0.7),
        },
        "services": {
            "smb": (12_000.0, 0.6),
            "mid_market": (45_000.0, 0.7),
            "enterprise": (220_000.0, 0.8),
            "public_sector": (120_000.0, 0.7),
        },
        "hardware": {
            "smb": (15_000.0, 0.7),
            "mid_market": (60_000.0, 0.7),
            "enterprise": (300_000.0, 0.8),
            "public_sector": (150_000.0, 0.8),
        },
    }


def _categories() -> tuple[CategoryParams, ...]:
    return (
        CategoryParams("license", 200.0, 2_500.0, 0.08, False),
        CategoryParams("subscription", 20.0, 400.0, 0.25, False),
        CategoryParams("support", 50.0, 600.0, 0.4, False),
        CategoryParams("consulting", 900.0, 1_800.0, 0.62, True),
        CategoryParams("implementation", 800.0, 1_500.0, 0.68, True),
        CategoryParams("training", 400.0, 1_200.0, 0.5, True),
        CategoryParams("devices", 150.0, 4_000.0, 0.74, False),
        CategoryParams("accessories", 10.0, 300.0, 0.55, False),
        CategoryParams("maintenance", 40.0, 500.0, 0.42, False),
    )


@dataclass(frozen=True)
class Params:
    """All ground-truth parameters of one generated world (defaults: the reference world)."""

    clients_per_sf: int = 10_000
    deals_per_sf: int = 100_000
    history_years: int = 3
    pipelines: tuple[PipelineParams, ...] = field(default_factory=_pipelines)
    segments: tuple[SegmentParams, ...] = field(default_factory=_segments)
    industries: tuple[IndustryParams, ...] = field(default_factory=_industries)
    use_cases: tuple[str, ...] = (
        "production_planning",
        "customer_service",
        "supply_chain",
        "finance_reporting",
    )
    regions: tuple[RegionParams, ...] = (
        RegionParams("dach", 0.3, "EUR"),
        RegionParams("benelux", 0.12, "EUR"),
        RegionParams("france", 0.12, "EUR"),
        RegionParams("nordics", 0.1, "EUR"),
        RegionParams("uk_ireland", 0.16, "GBP"),
        RegionParams("north_america", 0.2, "USD"),
    )
    business_line_shares: tuple[float, ...] = (0.45, 0.3, 0.25)
    step_rates: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=_step_rates)
    deal_sizes: dict[str, dict[str, tuple[float, float]]] = field(default_factory=_deal_sizes)
    categories: tuple[CategoryParams, ...] = field(default_factory=_categories)
    products_per_category: int = 6
    # Lead inflow: monthly multipliers (Jan..Dec; a summer and a December dip) and a yearly trend.
    monthly_seasonality: tuple[float, ...] = (1.0, 1.05, 1.1, 1.05, 1.0, 0.95, 0.75, 0.7, 1.1, 1.15, 1.1, 0.7)
    yearly_trend: float = 0.08
    crisis_start: str = "2025-03-01"
    crisis_end: str = "2025-08-31"
    # Funnel dynamics.
    stage_duration_sigma: float = 0.6
    """Lognormal sigma of the time spent in a stage (the median is configured per stage x segment)."""
    entry_stage2_share: dict[str, float] = field(
        default_factory=lambda: {"referral": 0.7, "existing_client": 0.5, "partner": 0.2}
    )
    """Share of deals of a channel that enter the funnel directly at the second stage."""
    skip_share: float = 0.05
    """Share of advances that jump over the next open stage (only between open stages)."""
    backward_share: float = 0.03
    """Probability that a deal leaving an open stage (not the first) goes back one stage."""
    reopen_share: float = 0.02
    """Probability that a lost deal is reopened into the stage it was lost from."""
    reopen_median_days: float = 20.0
    open_without_amount_share: float = 0.3
    lost_reasons: tuple[str, ...] = (
        "price",
        "competitor",
        "no_budget",
        "no_decision",
        "timing",
        "unresponsive",
    )
    lost_reason_weights: tuple[float, ...] = (0.25, 0.22, 0.18, 0.15, 0.1, 0.1)
    # Sales effort.
    owners_per_line_sf1: tuple[int, ...] = (8, 6, 5)
    min_owners_per_line: int = 2
    high_effort_owner_share: float = 0.2
    high_effort_multiplier: float = 2.5
    activity_rate_per_day: float = 0.16
    """Expected activities per day of an open stage spell, before owner effort and segment multipliers."""
    activity_type_shares: tuple[float, ...] = (0.35, 0.15, 0.35, 0.15)
    """Shares of call, meeting, email, task."""
    effort_sink_client_share: float = 0.03
    """Share of clients that get much activity but never win (their deals are lost at the last step)."""
    effort_sink_activity_multiplier: float = 4.0
    # Invoicing.
    invoice_delay_days: tuple[int, int] = (3, 30)
    recurring_months: tuple[int, int] = (18, 48)
    recurring_value_share: float = 0.035
    """Monthly recurring invoice value as a share of the won deal's list value."""
    credit_note_share: float = 0.03
    full_credit_share: float = 0.5
    discount_concentration: float = 12.0
    """Beta concentration of the discount depth around the segment's mean discount."""
    quantity_noise_sigma: float = 0.15
    # FX: EUR per unit of each currency at the start of history; daily log volatility.
    fx_start: dict[str, float] = field(default_factory=lambda: {"EUR": 1.0, "USD": 0.92, "GBP": 1.16})
    fx_daily_sigma: float = 0.004
    list_price_factor: dict[str, float] = field(default_factory=lambda: {"EUR": 1.0, "USD": 1.1, "GBP": 0.87})
    """List prices in each currency per EUR of list price."""
    # Planning.
    target_growth: float = 0.1
    client_update_share: float = 0.08

    def pipeline(self, business_line: str) -> PipelineParams:
        """The pipeline of a business line."""
        return next(p for p in self.pipelines if p.business_line == business_line)

    def segment(self, name: str) -> SegmentParams:
        """The parameters of a segment."""
        return next(s for s in self.segments if s.name == name)

    def median_days(self, business_line: str, segment: str) -> tuple[float, ...]:
        """Configured median days in each open stage of the line's pipeline for a segment."""
        mult = self.segment(segment).duration_multiplier
        return tuple(d * mult for d in self.pipeline(business_line).base_median_days)

    def entry_stage2_probability(self, segment: str) -> float:
        """Probability that a deal of the segment enters its pipeline at the second stage."""
        shares = self.segment(segment).channel_shares
        return sum(s * self.entry_stage2_share.get(c, 0.0) for c, s in zip(CHANNELS, shares, strict=True))

    def expected_reach(self, business_line: str, segment: str) -> tuple[float, ...]:
        """P(a deal enters open stage k or any later stage), k = 1..n open stages, then won.

        Exact for the Markov chain the generator simulates outside the crisis window and for clients
        that are not effort sinks: entry at stage 1 or 2, advance with the step rate (a share of
        advances skip one open stage), backward moves, lost deals reopened into the same stage.
        """
        steps = self.step_rates[business_line][segment]
        n = len(steps)
        won = n
        trans = np.zeros((n, n + 1))  # open stage -> open stage or won (lost is the remainder)
        for k in range(n):
            back = self.backward_share if k >= 1 else 0.0
            if k >= 1:
                trans[k, k - 1] += back
            advance = (1.0 - back) * steps[k]
            if k == n - 1:
                trans[k, won] += advance
            elif k + 2 <= n - 1:
                trans[k, k + 2] += advance * self.skip_share
                trans[k, k + 1] += advance * (1.0 - self.skip_share)
            else:
                trans[k, k + 1] += advance
            trans[k, k] += (1.0 - back) * (1.0 - steps[k]) * self.reopen_share
        p2 = self.entry_stage2_probability(segment)
        entry = np.zeros(n)
        entry[0], entry[1] = 1.0 - p2, p2
        reach = []
        for j in range(n + 1):
            if j == 0:
                reach.append(1.0)
                continue
            # h = P(hit {j..n-1, won} | start in i) for i < j; states >= j are absorbing with h = 1.
            q = trans[:j, :j]
            r = trans[:j, j:].sum(axis=1)
            h = np.linalg.solve(np.eye(j) - q, r)
            reach.append(float(entry[:j] @ h + entry[j:].sum()))
        return tuple(reach)
