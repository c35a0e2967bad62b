"""Reverse funnel: from the revenue targets to the leads needed, per target period x line x segment.

- **Rates** come from the deals that reached each stage in the trailing `rate_window_months` before the
  as-of date (open deals that have not moved yet are left out, as in `funnel_conversion`).
- **Shrinkage** (beta-binomial, empirical Bayes): a segment's step rate starts from its business line's
  pooled rate worth `prior_strength` deals, then adds its own advanced / dropped deals:
  rate = (m p_line + advanced) / (m + advanced + dropped). A segment with 5 decided deals is mostly its
  line; one with 500 is itself. `effective_n` = m + decided deals, and the 90 % interval is the Beta
  posterior's. The interval of the conversion to won (a product of steps) uses the delta method on the
  log scale: var(log C) = sum of (1 - p) / (p (a + b + 1)).
- **Average won deal** shrinks the same way toward the line's, with `amount_prior_deals` pseudo-deals.
- **Reverse funnel**: W = (target) / average won deal; deals needed at stage k = W / C_k; leads = the
  first stage's. So leads x C_1 x average won deal = target (before the pipeline credit), exactly.
- **Timing**: days from reaching stage k to won = median over the won deals of the window (the line's
  when the segment has fewer than `min_won_for_timing`). A deal must enter k between period start and
  period end minus those days.
- **Pipeline credit**: each open deal is expected to win with its current stage's C_k and to close
  `days to won` after entering that stage (not before the as-of date); what lands in the period is
  credited, amount-weighted (a deal without amount counts the average won deal).
- **Gap**: what is left of the target after won and pipeline, in leads, spread over the months left of
  the lead arrival window, against the inflow of new leads of the last `inflow_months`.

Where it runs: the counts, medians and sums over deals and their stage reach are DuckDB SQL
(`lead_requirements_from_tables`, on `transforms.funnel`'s deal facts); Polars computes the rates,
intervals and the reverse funnel from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl
from scipy import stats

from transforms.exact import exact_avg_sql, exact_sum, exact_sum_sql
from transforms.funnel import (
    AMOUNT_SCALE,
    SHARE_SCALE,
    chained_conversions,
    days_sql,
    funnel_stages,
    line_segment_pairs,
    line_segment_universe,
    materialize_deal_facts,
)
from transforms.sql import Tables, date_literal, frame_tables

_DAYS_PER_MONTH = 365.25 / 12
EXPECTED_MONEY_SCALE = 1e6
"""Expected amounts (amount x probability) are summed exactly to 1e-6 (`transforms.exact`)."""


@dataclass(frozen=True)
class RateSettings:
    rate_window_months: int = 12
    prior_strength: float = 20.0
    amount_prior_deals: float = 5.0
    interval: float = 0.9
    min_won_for_timing: int = 5
    inflow_months: int = 3


def _months_before(as_of: date, months: int) -> date:
    return pl.select(pl.lit(as_of).dt.offset_by(f"-{months}mo")).item()


def _beta_quantile(q: float) -> pl.Expr:
    return (
        pl.struct("alpha", "beta")
        .map_batches(
            lambda s: pl.Series(
                stats.beta.ppf(q, s.struct.field("alpha").to_numpy(), s.struct.field("beta").to_numpy())
            ),
            return_dtype=pl.Float64,
        )
        .fill_nan(None)
    )


def stage_counts(t: Tables, reach: str, since: date) -> pl.LazyFrame:
    """Per business line x segment x stage: deals that reached it since `since` (own funnel) and
    advanced, or dropped out."""
    return t.frame(
        f"""
        select business_line, segment, stage_id,
            count(*) filter (where has_advanced) as advanced,
            count(*) filter (where is_dropped) as dropped
        from ({reach})
        where view_business_line = business_line and cast(reached_at as date) >= {date_literal(since)}
        group by business_line, segment, stage_id
        """
    ).lazy()


def shrunk_stage_rates(
    counts: pl.LazyFrame, universe: pl.LazyFrame, stages: pl.LazyFrame, settings: RateSettings
) -> pl.LazyFrame:
    """One row per business line x segment x shown stage: observed and shrunk step conversion with its
    interval and effective n, and the chained conversion to won with its interval. `counts`: advanced
    and dropped deals per line x segment x stage (`stage_counts`)."""
    line = counts.group_by("business_line", "stage_id").agg(
        # Half a deal each way (Jeffreys): a line without a single loss still gets a proper prior.
        line_rate=(pl.col("advanced").sum() + 0.5) / (pl.col("advanced").sum() + pl.col("dropped").sum() + 1)
    )
    z = float(stats.norm.ppf(0.5 + settings.interval / 2))
    m = settings.prior_strength
    shown = stages.filter(pl.col("view_business_line") == pl.col("pipeline_id")).select(
        pl.col("pipeline_id").alias("business_line"), "stage_id", "stage_number", "is_won"
    )
    group = ["business_line", "segment"]
    return (
        universe.join(shown, on="business_line")
        .join(counts, on=["business_line", "segment", "stage_id"], how="left")
        .join(line, on=["business_line", "stage_id"], how="left")
        .with_columns(
            pl.col("advanced", "dropped").fill_null(0).cast(pl.Int64), pl.col("line_rate").fill_null(0.5)
        )
        .with_columns(
            decided_deal_count=pl.when(~pl.col("is_won")).then(pl.col("advanced") + pl.col("dropped")),
            step_conversion_observed=pl.when(
                ~pl.col("is_won") & (pl.col("advanced") + pl.col("dropped") > 0)
            ).then(pl.col("advanced") / (pl.col("advanced") + pl.col("dropped"))),
            alpha=pl.when(~pl.col("is_won")).then(m * pl.col("line_rate") + pl.col("advanced")),
            beta=pl.when(~pl.col("is_won")).then(m * (1 - pl.col("line_rate")) + pl.col("dropped")),
        )
        .with_columns(
            effective_n=pl.col("alpha") + pl.col("beta"),
            step_conversion=pl.col("alpha") / (pl.col("alpha") + pl.col("beta")),
            step_conversion_low=_beta_quantile(0.5 - settings.interval / 2),
            step_conversion_high=_beta_quantile(0.5 + settings.interval / 2),
        )
        .with_columns(
            chained_conversions(group),
            log_variance=pl.when(pl.col("step_conversion") > 0).then(
                (1 - pl.col("step_conversion")) / (pl.col("step_conversion") * (pl.col("effective_n") + 1))
            ),
        )
        .with_columns(
            log_sd_to_won=pl.col("log_variance")
            .fill_null(0.0)
            .cum_sum(reverse=True)
            .over(group, order_by="stage_number")
            .sqrt()
        )
        .with_columns(
            conversion_to_won_low=(pl.col("conversion_to_won") * (-z * pl.col("log_sd_to_won")).exp()),
            conversion_to_won_high=(pl.col("conversion_to_won") * (z * pl.col("log_sd_to_won")).exp()).clip(
                upper_bound=1.0
            ),
        )
        .drop(
            "alpha",
            "beta",
            "line_rate",
            "log_variance",
            "log_sd_to_won",
            "cumulative_conversion",
            "advanced",
            "dropped",
        )
    )


def _average_won_deal(t: Tables, universe: pl.LazyFrame, since: date, settings: RateSettings) -> pl.LazyFrame:
    """Per line x segment: (segment's won amounts + k x line average) / (segment's won deals + k)."""
    won = f"""
        select business_line, segment, amount_reporting from {{outcomes}}
        where status = 'won' and cast(won_at as date) >= {date_literal(since)}
    """
    segment = t.frame(
        f"""
        select business_line, segment,
            {exact_sum_sql("amount_reporting", AMOUNT_SCALE)} as won_amount,
            count(amount_reporting) as won_with_amount
        from ({won}) group by business_line, segment
        """
    ).lazy()
    line = t.frame(
        f"select business_line, {exact_avg_sql('amount_reporting', AMOUNT_SCALE)} as line_average "
        f"from ({won}) group by business_line"
    ).lazy()
    k = settings.amount_prior_deals
    return (
        universe.join(line, on="business_line", how="left")
        .join(segment, on=["business_line", "segment"], how="left")
        .select(
            "business_line",
            "segment",
            average_won_deal_reporting=(pl.col("won_amount").fill_null(0.0) + k * pl.col("line_average"))
            / (pl.col("won_with_amount").fill_null(0) + k),
        )
    )


def _days_to_won(t: Tables, reach: str, since: date) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per line x segment x stage: median days from reaching the stage to won over the won deals of the
    window; the line's median when the segment has too few won deals."""
    won = f"""
        select business_line, segment, stage_id, {days_sql("won_at", "reached_at")} as days
        from ({reach})
        where view_business_line = business_line and status = 'won'
            and cast(won_at as date) >= {date_literal(since)} and reached_at is not null
    """
    segment = t.frame(
        f"""
        select business_line, segment, stage_id, median(days) as segment_days, count(*) as segment_won
        from ({won}) group by business_line, segment, stage_id
        """
    ).lazy()
    line = t.frame(
        f"""
        select business_line, stage_id, median(days) as line_days
        from ({won}) group by business_line, stage_id
        """
    ).lazy()
    return line, segment


def _open_deals(t: Tables) -> pl.LazyFrame:
    """Open deals with the stage they are in (their last event's) and when they entered it."""
    return t.frame(
        """
        select outcomes.deal_id, outcomes.business_line, outcomes.segment, outcomes.amount_reporting,
            last_events.stage_id, last_events.stage_entered_at
        from (
            -- The last event: the highest transition_number (`transforms.funnel.OUTCOMES_SQL`).
            select deal_id, arg_max_null(to_stage_id, transition_number) as stage_id,
                max(changed_at) as stage_entered_at
            from {events}
            group by deal_id
        ) as last_events
        inner join {outcomes} as outcomes on last_events.deal_id = outcomes.deal_id
        where outcomes.status = 'open'
        """
    ).lazy()


def lead_requirements(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    settings: RateSettings | None = None,
) -> pl.LazyFrame:
    """One row per target period x business line x segment x stage (open stages and won)."""
    sources = {"transitions": transitions, "dim_deals": dim_deals, "dim_clients": dim_clients}
    with frame_tables(sources) as t:
        return lead_requirements_from_tables(t, stages, targets, as_of, settings)


def lead_requirements_from_tables(
    t: Tables,
    stages: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    settings: RateSettings | None = None,
) -> pl.LazyFrame:
    """`lead_requirements` with the deal sources (`DEAL_SOURCES`) bound in `t`: deal-level figures are
    aggregated in DuckDB, the rates and the reverse funnel computed in Polars from them."""
    settings = settings or RateSettings()
    reach = materialize_deal_facts(t, as_of, stages)
    shown = funnel_stages(stages)
    since = _months_before(as_of, settings.rate_window_months)
    universe = line_segment_universe(line_segment_pairs(t).lazy(), targets).filter(
        (pl.col("business_line") != "(all)") & (pl.col("segment") != "(all)")
    )
    rates = shrunk_stage_rates(stage_counts(t, reach, since), universe, shown, settings)

    seg_amounts = _average_won_deal(t, universe, since, settings)
    line_timing, seg_timing = _days_to_won(t, reach, since)

    stage_rows = (
        rates.join(seg_amounts, on=["business_line", "segment"], how="left")
        .join(line_timing, on=["business_line", "stage_id"], how="left")
        .join(seg_timing, on=["business_line", "segment", "stage_id"], how="left")
        .with_columns(
            days_to_won=pl.when(pl.col("is_won"))
            .then(0.0)
            .when(pl.col("segment_won").fill_null(0) >= settings.min_won_for_timing)
            .then("segment_days")
            .otherwise("line_days")
        )
        .drop("line_days", "segment_days", "segment_won")
    )

    # Pipeline credit: open deals by their current stage.
    current = (
        _open_deals(t)
        .join(stage_rows, on=["business_line", "segment", "stage_id"])
        .with_columns(
            expected_close_date=pl.max_horizontal(
                (pl.col("stage_entered_at") + pl.duration(seconds=pl.col("days_to_won") * 86_400)).dt.date(),
                pl.lit(as_of),
            ),
            expected_amount=pl.col("conversion_to_won")
            * pl.col("amount_reporting").fill_null(pl.col("average_won_deal_reporting")),
        )
        .select("business_line", "segment", "conversion_to_won", "expected_close_date", "expected_amount")
    )
    periods = targets.select("period_start", "period_end").unique()
    pipeline = (
        current.join(periods, how="cross")
        .filter(pl.col("expected_close_date").is_between(pl.col("period_start"), pl.col("period_end")))
        .group_by("period_start", "business_line", "segment")
        .agg(
            pipeline_expected_amount_reporting=exact_sum(pl.col("expected_amount"), EXPECTED_MONEY_SCALE),
            pipeline_expected_won_deals=exact_sum(pl.col("conversion_to_won"), SHARE_SCALE),
        )
    )
    t.add("periods", periods.collect())
    won_so_far = t.frame(
        f"""
        select periods.period_start, outcomes.business_line, outcomes.segment,
            {exact_sum_sql("outcomes.amount_reporting", AMOUNT_SCALE)} as won_so_far_reporting
        from {{outcomes}} as outcomes
        inner join {{periods}} as periods
            on cast(outcomes.won_at as date) between periods.period_start and periods.period_end
        where outcomes.status = 'won'
        group by periods.period_start, outcomes.business_line, outcomes.segment
        """
    ).lazy()
    inflow_since = _months_before(as_of, settings.inflow_months)
    inflow = t.frame(
        f"""
        select business_line, segment, count(*) as recent_inflow
        from ({reach})
        where view_business_line = business_line and stage_number = 1
            and cast(reached_at as date) > {date_literal(inflow_since)}
        group by business_line, segment
        """
    ).lazy()
    inflow = inflow.select(
        "business_line", "segment", recent_inflow_per_month=pl.col("recent_inflow") / settings.inflow_months
    )
    first_stage = stage_rows.filter(pl.col("stage_number") == 1).select(
        "business_line",
        "segment",
        leads_conversion_to_won="conversion_to_won",
        lead_days_to_won="days_to_won",
    )
    target_rows = (
        periods.join(universe, how="cross")
        .join(
            targets.select("period_start", "business_line", "segment", "revenue_target_reporting"),
            on=["period_start", "business_line", "segment"],
            how="left",
        )
        .with_columns(pl.col("revenue_target_reporting").cast(pl.Float64).fill_null(0.0))
        .join(pipeline, on=["period_start", "business_line", "segment"], how="left")
        .join(won_so_far, on=["period_start", "business_line", "segment"], how="left")
        .join(inflow, on=["business_line", "segment"], how="left")
        .join(first_stage, on=["business_line", "segment"], how="left")
        .with_columns(
            pl.col(
                "pipeline_expected_amount_reporting",
                "pipeline_expected_won_deals",
                "won_so_far_reporting",
                "recent_inflow_per_month",
            ).fill_null(0.0)
        )
    )
    as_of_lit = pl.lit(as_of)
    return (
        target_rows.join(stage_rows, on=["business_line", "segment"])
        .with_columns(
            won_deals_needed=pl.col("revenue_target_reporting") / pl.col("average_won_deal_reporting"),
        )
        .with_columns(
            deals_needed=pl.col("won_deals_needed") / pl.col("conversion_to_won"),
            leads_needed=pl.col("won_deals_needed") / pl.col("leads_conversion_to_won"),
            must_enter_from_date=pl.col("period_start").dt.offset_by(
                pl.format("-{}d", pl.col("days_to_won").round(0).cast(pl.Int64))
            ),
            must_enter_by_date=pl.col("period_end").dt.offset_by(
                pl.format("-{}d", pl.col("days_to_won").round(0).cast(pl.Int64))
            ),
            remaining_gap_reporting=(
                pl.col("revenue_target_reporting")
                - pl.col("won_so_far_reporting")
                - pl.col("pipeline_expected_amount_reporting")
            ).clip(lower_bound=0.0),
            coverage=pl.when(pl.col("revenue_target_reporting") > pl.col("won_so_far_reporting")).then(
                pl.col("pipeline_expected_amount_reporting")
                / (pl.col("revenue_target_reporting") - pl.col("won_so_far_reporting"))
            ),
            lead_window_start=pl.col("period_start").dt.offset_by(
                pl.format("-{}d", pl.col("lead_days_to_won").round(0).cast(pl.Int64))
            ),
            lead_window_end=pl.col("period_end").dt.offset_by(
                pl.format("-{}d", pl.col("lead_days_to_won").round(0).cast(pl.Int64))
            ),
        )
        .with_columns(
            extra_leads_needed=pl.col("remaining_gap_reporting")
            / pl.col("average_won_deal_reporting")
            / pl.col("leads_conversion_to_won"),
            lead_window_months_left=(
                (
                    pl.col("lead_window_end") - pl.max_horizontal("lead_window_start", as_of_lit)
                ).dt.total_days()
                + 1
            ).clip(lower_bound=0)
            / _DAYS_PER_MONTH,
        )
        .with_columns(
            leads_needed_per_month=pl.when(pl.col("lead_window_months_left") > 0).then(
                pl.col("extra_leads_needed") / pl.col("lead_window_months_left")
            ),
        )
        .with_columns(lead_gap_per_month=pl.col("leads_needed_per_month") - pl.col("recent_inflow_per_month"))
        .select(
            "period_start",
            "period_end",
            "business_line",
            "segment",
            "stage_number",
            "stage_id",
            "revenue_target_reporting",
            "won_so_far_reporting",
            "average_won_deal_reporting",
            "won_deals_needed",
            "decided_deal_count",
            "step_conversion_observed",
            "step_conversion",
            "step_conversion_low",
            "step_conversion_high",
            "effective_n",
            "conversion_to_won",
            "conversion_to_won_low",
            "conversion_to_won_high",
            "deals_needed",
            "days_to_won",
            "must_enter_from_date",
            "must_enter_by_date",
            "leads_needed",
            "pipeline_expected_amount_reporting",
            "pipeline_expected_won_deals",
            "remaining_gap_reporting",
            "coverage",
            "extra_leads_needed",
            "lead_window_months_left",
            "leads_needed_per_month",
            "recent_inflow_per_month",
            "lead_gap_per_month",
        )
        .sort("period_start", "business_line", "segment", "stage_number")
    )
