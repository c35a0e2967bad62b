"""Client segmentation and the segment scorecard: thin wiring around `transforms.client_base` and
`transforms.client_scorecard`; every threshold and window is typed run config with a documented default."""

from datetime import date

import dagster as dg
import polars as pl
from pydantic import Field

from ingestion.frames import read_frame, replace_table
from orchestration.partitions import WRITER_POOL, partition_as_of
from orchestration.resources import WarehouseResource
from transforms.client_base import SegmentationSettings, client_segments_from_tables
from transforms.client_scorecard import (
    ScorecardSettings,
    crisis_window_from_tables,
    segment_scorecard_from_tables,
)
from transforms.sql import tables

CLIENT_SEGMENTS_KEY = dg.AssetKey(["marts", "client_segments"])
# The large sources, read by the transforms' SQL in the warehouse (only what each query needs).
CLIENT_RELATIONS = {
    "dim_clients": "marts.dim_clients",
    "turnover": "marts.fct_client_turnover",
    "lines": "intermediate.int_invoice_lines_converted",
    "activities": "staging.stg_crm__activities",
}
SCORECARD_RELATIONS = {"lines": "intermediate.int_invoice_lines_converted", "deals": "marts.dim_deals"}
SEGMENT_SCORECARD_KEY = dg.AssetKey(["marts", "segment_scorecard"])
_SEG = SegmentationSettings()
_CARD = ScorecardSettings()


class ClientSegmentsConfig(dg.Config):
    """Thresholds and windows of the client segmentation."""

    analysis_months: int = Field(
        default=_SEG.analysis_months, description="Complete months before the as-of month that ABC/XYZ use."
    )
    abc_a_share: float = Field(
        default=_SEG.abc_a_share, description="A: cumulative share of value up to this."
    )
    abc_b_share: float = Field(
        default=_SEG.abc_b_share, description="B: cumulative share up to this; C above."
    )
    xyz_x_max_cv: float = Field(default=_SEG.xyz_x_max_cv, description="X: monthly turnover CV at most this.")
    xyz_y_max_cv: float = Field(default=_SEG.xyz_y_max_cv, description="Y: CV at most this; Z above.")
    growth_band: float = Field(
        default=_SEG.growth_band, description="Half-over-half change beyond which a client grows or declines."
    )
    activity_hours_without_duration: dict[str, float] = Field(
        default=_SEG.activity_hours_without_duration,
        description="Hours counted for an activity of this type without a duration (weighted counts).",
    )
    default_activity_hours: float = Field(
        default=_SEG.default_activity_hours,
        description="Hours of an activity of another type without duration.",
    )
    high_effort_quantile: float = Field(
        default=_SEG.high_effort_quantile, description="High effort: effort hours at or above this quantile."
    )
    low_return_quantile: float = Field(
        default=_SEG.low_return_quantile, description="Low return: margin per hour at or below this quantile."
    )
    headroom_quantile: float = Field(
        default=_SEG.headroom_quantile, description="Peer benchmark: this quantile of active peers' turnover."
    )
    min_peer_clients: int = Field(
        default=_SEG.min_peer_clients,
        description="Fewest active peers in segment x band before using segment.",
    )
    high_discount_ratio: float = Field(
        default=_SEG.high_discount_ratio, description="High price sensitivity: depth >= this x the book's."
    )
    low_discount_ratio: float = Field(
        default=_SEG.low_discount_ratio, description="Low price sensitivity: depth <= this x the book's."
    )

    def settings(self) -> SegmentationSettings:
        return SegmentationSettings(**self.model_dump())


class SegmentScorecardConfig(dg.Config):
    """Crisis window, price-sensitivity threshold and focus weights of the segment scorecard."""

    crisis_start: str | None = Field(
        default=None,
        description="First day of the crisis window (YYYY-MM-DD); empty = detect from lead inflow.",
    )
    crisis_end: str | None = Field(default=None, description="Last day of the crisis window (YYYY-MM-DD).")
    crisis_months: int = Field(default=_CARD.crisis_months, description="Length of a detected crisis window.")
    elastic_threshold: float | None = Field(
        default=_CARD.elastic_threshold,
        description=(
            "Elasticity above which a segment is price-sensitive; empty = the whole book's elasticity."
        ),
    )
    min_elasticity_deals: int = Field(
        default=_CARD.min_elasticity_deals, description="Fewest won deals to estimate an elasticity."
    )
    focus_weight_revenue_per_lead: float = Field(default=_CARD.focus_weight_revenue_per_lead)
    focus_weight_potential: float = Field(default=_CARD.focus_weight_potential)
    focus_weight_resilience: float = Field(default=_CARD.focus_weight_resilience)

    def settings(self) -> ScorecardSettings:
        values = self.model_dump()
        for name in ("crisis_start", "crisis_end"):
            values[name] = date.fromisoformat(values[name]) if values[name] else None
        return ScorecardSettings(**values)


CLIENT_SEGMENTS_DESCRIPTION = (
    "One row per client account (dim_clients, deleted ones included): ABC by turnover and by margin, XYZ "
    "by stability of monthly turnover, RFM, growth trend, sales effort and margin per effort hour, headroom "
    "against peers, price sensitivity. Window: the complete months before the as-of month (EUR)."
)
CLIENT_SEGMENTS_COLUMNS = {
    "client_id": "CRM key of the client account.",
    "industry": "Industry profile ('unknown' when empty).",
    "use_case": "Use case of the product in the client's value chain ('unknown' when empty).",
    "segment": "Sales segment.",
    "revenue_band": "Size band by the client's own revenue ('unknown' when empty).",
    "is_deleted": "True when the account was deleted in the CRM (kept: its turnover is real).",
    "as_of_date": "The run's 'today'; nothing after it is counted.",
    "window_start_month": "First month of the analysis window.",
    "window_end_month": "Last month of the analysis window (the month before the as-of month).",
    "lifetime_turnover_reporting": (
        "Net turnover of every month up to the as-of month, EUR (fct_client_turnover)."
    ),
    "lifetime_margin_reporting": "Margin of every month up to the as-of month, EUR.",
    "turnover_reporting": "Net turnover in the analysis window, EUR (credit notes included).",
    "margin_reporting": "Margin in the analysis window, EUR.",
    "abc_turnover_cumulative_share": (
        "Share of the window's positive turnover held by this client and all larger ones."
    ),
    "abc_turnover_class": (
        "A (cumulative share up to 80 %), B (up to 95 %), C (the rest or no turnover); thresholds in config."
    ),
    "abc_margin_cumulative_share": (
        "Share of the window's positive margin held by this client and all larger ones."
    ),
    "abc_margin_class": "ABC class by margin, same thresholds.",
    "active_months": "Months of the window with turnover.",
    "monthly_turnover_mean_reporting": (
        "Mean monthly turnover over the window, months without invoices as zero, EUR."
    ),
    "monthly_turnover_cv": (
        "Coefficient of variation (population SD / mean) of monthly turnover; empty without turnover."
    ),
    "xyz_class": "X (CV <= 0.5), Y (<= 1.0), Z (above, or no turnover in the window); thresholds in config.",
    "abc_xyz_class": "ABC by turnover and XYZ together, e.g. AX.",
    "last_invoice_date": "Latest invoice issue date up to the as-of date (credit notes aside).",
    "recency_days": "Days from the last invoice to the as-of date.",
    "invoice_count": "Invoices issued in the window (frequency).",
    "recency_score": "1-5 by quintile of recency among invoiced clients (5 = most recent); 0 never invoiced.",
    "frequency_score": "1-5 by quintile of invoice_count (5 = most); 0 never invoiced.",
    "monetary_score": "1-5 by quintile of window turnover (5 = most); 0 never invoiced.",
    "rfm_score": "Recency, frequency and monetary scores side by side, e.g. 545.",
    "turnover_first_half_reporting": "Turnover of the first half of the window, EUR.",
    "turnover_second_half_reporting": "Turnover of the second half of the window, EUR.",
    "turnover_growth": "Second half / first half - 1; empty when the first half had none.",
    "growth_trend": "growing / stable / declining (beyond +-10 % half over half), new, or inactive.",
    "effort_hours": (
        "Sales effort in the window: activity hours, or configured hours per type without a duration."
    ),
    "activity_count": "CRM activities with the client in the window.",
    "activities_without_duration": "Of those, activities counted with the configured hours of their type.",
    "margin_per_effort_hour": "Window margin / effort hours, EUR; empty without effort.",
    "is_high_effort_low_return": (
        "Effort in the top quartile and margin per hour in the bottom quartile of clients with effort."
    ),
    "peer_group": (
        "Comparable clients: segment / revenue band, or the segment when the band has too few active clients."
    ),
    "peer_client_count": "Active clients (window turnover > 0) in the peer group.",
    "peer_benchmark_turnover_reporting": "P75 (configurable) of the peers' window turnover, EUR.",
    "headroom_reporting": (
        "Benchmark minus the client's window turnover, at least zero; zero for deleted or merged "
        "accounts, EUR."
    ),
    "discount_depth": (
        "1 - net / list value of the client's invoice lines up to the as-of date (credit notes aside)."
    ),
    "price_sensitivity_class": (
        "high (depth >= 1.25 x the book's), low (<= 0.75 x), medium, unknown (no lines)."
    ),
}

SEGMENT_SCORECARD_DESCRIPTION = (
    "One row per grouping x segment: grouping is industry_use_case (the niche), industry, use_case, "
    "segment, business_line or total; shares add to one within a grouping and turnover to "
    "fct_client_turnover. "
    "Turnover, classes, funnel, price sensitivity, crisis resilience, potential and a focus rank (EUR)."
)
SEGMENT_SCORECARD_COLUMNS = {
    "grouping": (
        "Which dimensions the row groups by: industry_use_case, industry, use_case, segment, "
        "business_line, total."
    ),
    "segment_label": "The row's dimension values joined with ' / ' ('(all)' for the total).",
    "industry": "Industry profile; empty when not part of the grouping.",
    "use_case": "Use case; empty when not part of the grouping.",
    "segment": "Sales segment; empty when not part of the grouping.",
    "business_line": (
        "Business line of the invoice line's deal (or its product category's main line); empty when not "
        "part of the grouping."
    ),
    "window_start_month": "First month of the analysis window (as in client_segments).",
    "window_end_month": "Last month of the analysis window.",
    "client_count": "Client accounts in the segment (business_line rows: clients invoiced in the line).",
    "active_client_count": "Of those, clients with turnover in the window.",
    "lifetime_turnover_reporting": (
        "Net turnover up to the as-of month, EUR; sums to fct_client_turnover per grouping."
    ),
    "lifetime_margin_reporting": (
        "Margin up to the as-of month, EUR; sums to fct_client_turnover per grouping."
    ),
    "turnover_reporting": "Net turnover in the analysis window, EUR.",
    "margin_reporting": "Margin in the analysis window, EUR.",
    "turnover_share": "Share of the grouping's window turnover.",
    "margin_share": "Share of the grouping's window margin.",
    "abc_turnover_a_client_count": "Clients of class A by turnover.",
    "abc_turnover_b_client_count": "Clients of class B by turnover.",
    "abc_turnover_c_client_count": "Clients of class C by turnover.",
    "abc_margin_a_client_count": "Clients of class A by margin.",
    "abc_margin_b_client_count": "Clients of class B by margin.",
    "abc_margin_c_client_count": "Clients of class C by margin.",
    "xyz_x_client_count": "Clients of class X.",
    "xyz_y_client_count": "Clients of class Y.",
    "xyz_z_client_count": "Clients of class Z.",
    "high_effort_low_return_client_count": "Clients flagged high effort, low return.",
    "deals_created": "Deals created in the window (lead inflow).",
    "lead_inflow_share": "Share of the grouping's deals created in the window: today's inflow mix.",
    "deals_won": "Deals won in the window.",
    "deals_lost": "Deals lost in the window.",
    "win_rate": "Won / (won + lost) of deals closed in the window.",
    "average_won_deal_reporting": "Mean amount of deals won in the window, EUR.",
    "revenue_per_lead_reporting": "Win rate x average won deal: what one lead is worth, EUR.",
    "leads_per_million_won": "Leads needed per million EUR won at this conversion and deal size.",
    "discount_depth": "1 - net / list value of invoice lines (credit notes aside), up to the as-of date.",
    "discount_depth_se": "Standard error of discount_depth, clustered by client.",
    "price_elasticity": (
        "Volume response to price: -d log(first-invoice list value) / d log(1 - discount), fixed effects "
        "per line x segment."
    ),
    "price_elasticity_se": "Standard error of the elasticity, clustered by client.",
    "price_elasticity_low": "Lower end of the 95 % interval of the elasticity.",
    "price_elasticity_high": "Upper end of the 95 % interval of the elasticity.",
    "elasticity_deal_count": "Won deals with an invoice behind the elasticity.",
    "elastic_threshold": "Elasticity the class compares with (config, default the whole book's).",
    "price_sensitivity_class": (
        "high (elasticity above the threshold), low, unknown (too few deals); book on the total row."
    ),
    "price_sensitivity_confidence": (
        "significant when the 95 % interval excludes the threshold, else uncertain."
    ),
    "crisis_start": "First day of the crisis window.",
    "crisis_end": "Last day of the crisis window.",
    "baseline_start": "First day of the baseline: the same months a year before.",
    "baseline_end": "Last day of the baseline.",
    "crisis_window_method": (
        "How the window was chosen: configured, or detected (with the inflow change found)."
    ),
    "turnover_change": "Turnover in the crisis window / baseline - 1.",
    "lead_inflow_change": "Deals created in the crisis window / baseline - 1.",
    "crisis_win_rate": "Win rate of deals closed in the crisis window.",
    "baseline_win_rate": "Win rate of deals closed in the baseline.",
    "win_rate_change": "Crisis win rate / baseline win rate - 1.",
    "resilience_change": "Mean of the three changes above.",
    "resilience_score": (
        "Mean percentile rank of the three changes within the grouping (1 = held best on all)."
    ),
    "resilience_rank": "Rank of resilience_score within the grouping (1 = held best).",
    "headroom_reporting": "Sum of the clients' headroom against their peers, EUR.",
    "headroom_share": "Headroom / window turnover.",
    "focus_score": (
        "Weighted mean percentile rank of revenue per lead, headroom and resilience within the grouping."
    ),
    "focus_rank": "Rank of focus_score within the grouping (1 = where a lead is worth most).",
}


def _markdown(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * frame.width + "\n"
    return head + "\n".join(
        "| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.iter_rows()
    )


def build_client_base_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=CLIENT_SEGMENTS_KEY,
        description=CLIENT_SEGMENTS_DESCRIPTION,
        group_name="client_base",
        deps=[
            dg.AssetKey(["marts", "dim_clients"]),
            dg.AssetKey(["marts", "fct_client_turnover"]),
            dg.AssetKey(["marts", "dim_deals"]),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        kinds={"polars", "duckdb"},
    )
    def client_segments_asset(
        context: dg.AssetExecutionContext, config: ClientSegmentsConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """One row per client (marts.dim_clients), from fct_client_turnover, invoice lines and activities."""
        as_of = partition_as_of(context)
        with warehouse.connect() as conn:
            with tables(conn, CLIENT_RELATIONS) as source_tables:
                frame = client_segments_from_tables(source_tables, as_of, config.settings()).collect()
            rows = replace_table(
                conn, "marts", "client_segments", frame, CLIENT_SEGMENTS_DESCRIPTION, CLIENT_SEGMENTS_COLUMNS
            )
        headline = (
            frame.group_by("abc_turnover_class")
            .agg(
                pl.len().alias("clients"),
                pl.col("turnover_reporting").sum().alias("turnover_eur"),
                pl.col("is_high_effort_low_return").sum().alias("high_effort_low_return"),
                pl.col("headroom_reporting").sum().alias("headroom_eur"),
            )
            .sort("abc_turnover_class")
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "as_of_date": as_of.isoformat(),
                "by_abc_class": dg.MetadataValue.md(_markdown(headline)),
            }
        )

    @dg.asset(
        key=SEGMENT_SCORECARD_KEY,
        description=SEGMENT_SCORECARD_DESCRIPTION,
        group_name="client_base",
        deps=[
            CLIENT_SEGMENTS_KEY,
            dg.AssetKey(["marts", "dim_deals"]),
            dg.AssetKey(["marts", "fct_client_turnover"]),
            dg.AssetKey(["marts", "fct_stage_transitions"]),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WRITER_POOL,
        kinds={"polars", "duckdb"},
    )
    def segment_scorecard_asset(
        context: dg.AssetExecutionContext, config: SegmentScorecardConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        """One row per grouping x segment, from client_segments, invoice lines and marts.dim_deals."""
        as_of = partition_as_of(context)
        settings = config.settings()
        with warehouse.connect() as conn:
            with tables(conn, SCORECARD_RELATIONS) as source_tables:
                frame = segment_scorecard_from_tables(
                    source_tables,
                    read_frame(conn, "marts", "client_segments").lazy(),
                    crisis_window_from_tables(source_tables, as_of, settings),
                    as_of,
                    settings,
                ).collect()
            rows = replace_table(
                conn,
                "marts",
                "segment_scorecard",
                frame,
                SEGMENT_SCORECARD_DESCRIPTION,
                SEGMENT_SCORECARD_COLUMNS,
            )
        niches = frame.filter(pl.col("grouping") == "industry_use_case").sort("focus_rank").head(5)
        industries = frame.filter(pl.col("grouping") == "industry").sort("resilience_rank")
        crisis = frame.row(0, named=True)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "crisis_window": f"{crisis['crisis_start']} .. {crisis['crisis_end']} "
                f"(baseline {crisis['baseline_start']} .. {crisis['baseline_end']}): "
                f"{crisis['crisis_window_method']}",
                "top_niches": dg.MetadataValue.md(
                    _markdown(
                        niches.select(
                            "focus_rank", "segment_label", "revenue_per_lead_reporting", "headroom_reporting"
                        )
                    )
                ),
                "crisis_resilience_by_industry": dg.MetadataValue.md(
                    _markdown(
                        industries.select(
                            "resilience_rank",
                            "segment_label",
                            "turnover_change",
                            "lead_inflow_change",
                            "win_rate_change",
                        )
                    )
                ),
            }
        )

    return [client_segments_asset, segment_scorecard_asset]
