"""Why did the forecast move? A deal-level comparison of one run's forecast with the run before it.

Each run keeps its per-deal forecast (forecast_history_deals, by as-of date). Comparing run L (latest)
with run P (previous):
- a deal open in both: `moved_forward` / `moved_backward` (stage order up / down), `moved` (another
  stage at the same order), `amount_changed`, else `unchanged` (its probability may still have moved
  as it aged or as the model learned);
- open in L only: `added` (created or reopened since P);
- open in P only, its state at L's cutoff: `won`, `lost`, or `left_funnel` (deleted, excluded by the
  ingestion checks, or closed in the CRM without a close event).

Contribution = value in L - value in P, where the value of an open deal is its expected won amount
(P(win) x amount), of a won deal its amount, of a lost or departed deal 0; so the contributions add up
to the change of the open pipeline's expected value plus what was won in between. The same for the
current quarter (expected revenue in the quarter; a deal won inside L's quarter counts its amount),
when both runs share the quarter.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from transforms.forecast import open_deals_at, spells_known_at


def deal_states_at(spells: pl.LazyFrame, cutoff_at: datetime) -> pl.LazyFrame:
    """One row per deal known at the cutoff: its state then (open, won, lost, closed_in_crm), when it
    entered that state, and its amount."""
    known = spells_known_at(spells, cutoff_at)
    open_ids = open_deals_at(known, cutoff_at).select("deal_id", is_open=pl.lit(True))
    return (
        known.sort("deal_id", "entered_at")
        .group_by("deal_id")
        .agg(
            last_is_won=pl.col("is_won").last(),
            last_is_lost=pl.col("is_lost").last(),
            state_entered_at=pl.col("entered_at").last(),
            amount_reporting=pl.col("amount_reporting").last(),
        )
        .join(open_ids, on="deal_id", how="left")
        .select(
            "deal_id",
            pl.when(pl.col("is_open"))
            .then(pl.lit("open"))
            .when(pl.col("last_is_won"))
            .then(pl.lit("won"))
            .when(pl.col("last_is_lost"))
            .then(pl.lit("lost"))
            .otherwise(pl.lit("closed_in_crm"))
            .alias("state"),
            "state_entered_at",
            "amount_reporting",
        )
    )


def forecast_changes(previous: pl.LazyFrame, latest: pl.LazyFrame, states: pl.LazyFrame) -> pl.LazyFrame:
    """One row per deal open in either run: what happened to it and its contribution to the change.

    `previous`, `latest`: forecast_history_deals rows of one run each (as_of_date, current_quarter_start,
    deal_id, business_line, segment, stage_id, stage_order, deal_amount_reporting, win_probability,
    expected_won_amount, expected_revenue_current_quarter). `states`: `deal_states_at` the latest
    run's cutoff."""
    columns = [
        "as_of_date",
        "current_quarter_start",
        "deal_id",
        "business_line",
        "segment",
        "stage_id",
        "stage_order",
        "deal_amount_reporting",
        "win_probability",
        "expected_won_amount",
        "expected_revenue_current_quarter",
    ]
    prev = previous.select(columns).rename({c: f"previous_{c}" for c in columns if c != "deal_id"})
    last = latest.select(columns)
    latest_run = (
        latest.select("as_of_date", "current_quarter_start")
        .unique()
        .rename({"as_of_date": "run_as_of_date", "current_quarter_start": "run_quarter_start"})
    )
    previous_run = previous.select(pl.col("as_of_date").alias("run_previous_as_of_date")).unique()
    in_latest_quarter = pl.col("state_entered_at").dt.date() >= pl.col("run_quarter_start")
    return (
        prev.join(last, on="deal_id", how="full", coalesce=True)
        .join(states, on="deal_id", how="left")
        .join(latest_run, how="cross")
        .join(previous_run, how="cross")
        .with_columns(
            change_type=pl.when(pl.col("previous_stage_id").is_null())
            .then(pl.lit("added"))
            .when(pl.col("stage_id").is_null())
            .then(
                pl.when(pl.col("state") == "won")
                .then(pl.lit("won"))
                .when(pl.col("state") == "lost")
                .then(pl.lit("lost"))
                .otherwise(pl.lit("left_funnel"))
            )
            .when(pl.col("stage_order") > pl.col("previous_stage_order"))
            .then(pl.lit("moved_forward"))
            .when(pl.col("stage_order") < pl.col("previous_stage_order"))
            .then(pl.lit("moved_backward"))
            .when(pl.col("stage_id") != pl.col("previous_stage_id"))
            .then(pl.lit("moved"))
            .when(pl.col("deal_amount_reporting").ne_missing(pl.col("previous_deal_amount_reporting")))
            .then(pl.lit("amount_changed"))
            .otherwise(pl.lit("unchanged")),
            realised_amount=pl.when(pl.col("stage_id").is_null() & (pl.col("state") == "won"))
            .then(pl.col("amount_reporting").fill_null(0.0))
            .otherwise(0.0),
        )
        .with_columns(
            latest_value=pl.coalesce("expected_won_amount", "realised_amount"),
            latest_value_quarter=pl.coalesce(
                "expected_revenue_current_quarter",
                pl.when(in_latest_quarter).then(pl.col("realised_amount")).otherwise(0.0),
            ),
        )
        .with_columns(
            contribution=pl.col("latest_value") - pl.col("previous_expected_won_amount").fill_null(0.0),
            contribution_current_quarter=pl.when(
                pl.col("previous_current_quarter_start").is_null()
                | (pl.col("previous_current_quarter_start") == pl.col("run_quarter_start"))
            ).then(
                pl.col("latest_value_quarter")
                - pl.col("previous_expected_revenue_current_quarter").fill_null(0.0)
            ),
        )
        .select(
            pl.col("run_as_of_date").alias("as_of_date"),
            pl.col("run_previous_as_of_date").alias("previous_as_of_date"),
            "deal_id",
            pl.coalesce("business_line", "previous_business_line").alias("business_line"),
            pl.coalesce("segment", "previous_segment").alias("segment"),
            "change_type",
            "previous_stage_id",
            "stage_id",
            "previous_win_probability",
            "win_probability",
            pl.col("previous_expected_won_amount"),
            pl.col("latest_value").alias("expected_won_amount"),
            "contribution",
            "previous_expected_revenue_current_quarter",
            pl.col("latest_value_quarter").alias("expected_revenue_current_quarter"),
            "contribution_current_quarter",
        )
        .sort(pl.col("contribution").abs(), descending=True)
    )
