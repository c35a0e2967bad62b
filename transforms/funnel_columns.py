# ruff: noqa: E501 - one description per line reads better than wrapped strings.
"""Descriptions of the funnel tables and their columns, written as DuckDB comments for BI users.

Kept beside the transforms that define the figures, so a definition and its description change together.
"""

_KEYS = {
    "period_grain": "month or quarter.",
    "period_start": "First day of the period (UTC).",
    "period_end": "Last day of the period.",
    "business_line": "Business line (its pipeline); '(all)' on the all-lines total.",
    "segment": "Client segment of the deal ('unknown' without a client); '(all)' on the all-segments total.",
    "stage_number": "Position of the stage among the shown stages of the row's funnel (1 = first; won last).",
    "stage_id": "Stage of the pipeline; the all-lines funnel shows the stages every pipeline shares, and won.",
}

FUNNEL_CONVERSION = (
    "One row per period (month and quarter) x business line x segment x stage (open stages, then won), "
    "totals marked '(all)'; from marts.fct_stage_transitions, dim_deals and dim_clients. Reached = the deal "
    "entered the stage or a later one (any-stage); conversions leave open deals out. Deal figures (win "
    "rates, average won deal, sales cycle, velocity) repeat on every stage row: do not sum them over stages."
)
FUNNEL_CONVERSION_COLUMNS = {
    **_KEYS,
    "stage_name": "Display name of the stage.",
    "reached_count": "Deals whose first reach of the stage (entered it or any later non-lost stage) fell in the period.",
    "reached_strict_count": "Deals that entered every stage up to this one in order, counted in the period of their first entry into it.",
    "advanced_count": "Of reached_count, deals that have reached the next shown stage by the as-of date (empty on won).",
    "dropped_count": "Of reached_count, deals that did not reach the next stage and are lost now.",
    "pending_count": "Of reached_count, deals that did not reach the next stage and are still open (neither success nor failure yet).",
    "eventually_won_count": "Of reached_count, deals won by the as-of date.",
    "step_conversion": "advanced / (advanced + dropped): share of the decided deals that moved on (empty on won).",
    "cumulative_conversion": "Share of first-stage deals expected to reach this stage: product of the step conversions before it.",
    "conversion_to_won": "Share of the stage's deals expected to be won: product of the step conversions from this stage on (1 on won).",
    "completed_spell_count": "Stays in the stage that ended in the period.",
    "time_in_stage_median_days": "Median days of the stays in the stage that ended in the period.",
    "time_in_stage_p80_days": "80th percentile of those days.",
    "time_in_stage_mean_days": "Mean of those days.",
    "open_deal_count": "Deals in the stage at the end of the period's last day (or of the as-of day for the running period).",
    "open_amount_reporting": "Their amounts, EUR.",
    "sla_breach_count": "Of open_deal_count, deals in the stage longer (whole days) than the stage's SLA.",
    "won_count": "Deals won in the period (the line x segment's, on every stage row).",
    "lost_count": "Deals lost in the period.",
    "won_amount_reporting": "Amount of the deals won in the period, EUR.",
    "lost_amount_reporting": "Amount of the deals lost in the period, EUR.",
    "win_rate_count": "won / (won + lost), deals closed in the period.",
    "win_rate_amount": "won amount / (won + lost amount), deals closed in the period.",
    "average_won_deal_reporting": "Mean amount of the deals won in the period, EUR.",
    "sales_cycle_median_days": "Median days from creation to won, deals won in the period.",
    "sales_cycle_p80_days": "80th percentile of those days.",
    "open_deals_in_funnel": "Open deals in any open stage at the end of the period.",
    "pipeline_velocity_reporting_per_day": "open deals x win rate (count) x average won deal / median sales cycle days: EUR per day.",
}

FUNNEL_COHORTS = (
    "One row per cohort month of funnel entry (first stage event) x business line x segment, totals marked "
    "'(all)'; from marts.fct_stage_transitions, dim_deals and dim_clients. Open deals are never counted as "
    "lost: a cohort is immature until every deal has been watched for the maturity horizon, and the "
    "won / lost shares are also estimated with the Aalen-Johansen estimator (open deals censored)."
)
FUNNEL_COHORTS_COLUMNS = {
    "cohort_month": "First day of the month the deals entered the funnel.",
    "business_line": _KEYS["business_line"],
    "segment": _KEYS["segment"],
    "deal_count": "Deals that entered the funnel in the month.",
    "won_count": "Of them, won by the as-of date.",
    "lost_count": "Of them, lost by the as-of date.",
    "open_count": "Of them, still open.",
    "won_amount_reporting": "Amount of the cohort's won deals, EUR.",
    "won_share_observed": "won / deals so far (a floor while the cohort is immature).",
    "lost_share_observed": "lost / deals so far.",
    "open_share": "open / deals.",
    "is_mature": "True when the cohort's youngest deal has had the maturity horizon (days) to close.",
    "estimate_horizon_days": "Horizon of the estimated shares: the maturity horizon, or the days since the cohort month began if fewer (later entrants are censored).",
    "won_share_estimated": "Aalen-Johansen cumulative incidence of won within estimate_horizon_days of entry (lost as competing outcome, open censored).",
    "lost_share_estimated": "Aalen-Johansen cumulative incidence of lost within estimate_horizon_days of entry.",
}

LEAD_REQUIREMENTS = (
    "One row per target period x business line x segment x stage (open stages, then won); from "
    "staging.stg_planning__targets and the funnel marts. Reverse funnel: won deals needed = target / "
    "average won deal; deals needed at a stage = won deals needed / conversion to won; rates of the "
    "trailing window, shrunk toward the business line (beta-binomial), with their 90 % interval."
)
LEAD_REQUIREMENTS_COLUMNS = {
    "period_start": "First day of the target period.",
    "period_end": "Last day of the target period.",
    "business_line": "Business line of the target.",
    "segment": "Segment of the target (a segment with deals but no target has target 0).",
    "stage_number": _KEYS["stage_number"],
    "stage_id": "Stage of the pipeline.",
    "revenue_target_reporting": "Revenue goal of the period, EUR.",
    "won_so_far_reporting": "Amount of the deals won inside the period up to the as-of date, EUR.",
    "average_won_deal_reporting": "Average won deal of the rate window, shrunk toward the line's, EUR.",
    "won_deals_needed": "target / average won deal.",
    "decided_deal_count": "Deals of the rate window that reached the stage and are decided (advanced or lost).",
    "step_conversion_observed": "The segment's own advanced / decided, before shrinkage.",
    "step_conversion": "Step conversion shrunk toward the line: (prior strength x line rate + advanced) / (prior strength + decided).",
    "step_conversion_low": "5th percentile of the Beta posterior of the step conversion.",
    "step_conversion_high": "95th percentile of the Beta posterior of the step conversion.",
    "effective_n": "Prior strength + decided deals: how many deals the rate is worth.",
    "conversion_to_won": "Product of the shrunk step conversions from this stage on (1 on won).",
    "conversion_to_won_low": "Lower end of its 90 % interval (delta method on the log scale).",
    "conversion_to_won_high": "Upper end of its 90 % interval.",
    "deals_needed": "Deals that must reach this stage: won deals needed / conversion to won.",
    "days_to_won": "Median days from reaching this stage to won (the segment's won deals, else the line's).",
    "must_enter_from_date": "Period start minus days_to_won: from when deals must reach the stage.",
    "must_enter_by_date": "Period end minus days_to_won: by when deals must reach the stage.",
    "leads_needed": "Deals needed at the first stage (leads), before the pipeline credit.",
    "pipeline_expected_amount_reporting": "Open deals expected to be won inside the period (amount x conversion to won of their stage), EUR.",
    "pipeline_expected_won_deals": "Expected number of those wins.",
    "remaining_gap_reporting": "target - won so far - pipeline expected, at least 0, EUR.",
    "coverage": "pipeline expected amount / (target - won so far); empty when the target is already reached.",
    "extra_leads_needed": "Leads still needed for the remaining gap.",
    "lead_window_months_left": "Months left (from the as-of date) of the window in which leads must arrive.",
    "leads_needed_per_month": "extra leads needed / months left of the lead window; empty when the window is over.",
    "recent_inflow_per_month": "New leads (deals reaching the first stage) per month over the recent inflow months.",
    "lead_gap_per_month": "leads needed per month - recent inflow per month (positive: more leads than today's inflow).",
}

SEGMENT_FOCUS = (
    "One row per business line x segment: value per lead, today's and the recommended lead mix for the "
    "focus target period (a linear programme: fewest leads that reach every line's remaining gap within "
    "today's lead capacity), and the early warning (inflow or win rate down against the segment's own "
    "trailing baseline)."
)
SEGMENT_FOCUS_COLUMNS = {
    "business_line": "Business line.",
    "segment": "Segment.",
    "period_start": "First day of the focus target period.",
    "period_end": "Last day of the focus target period.",
    "revenue_target_reporting": "Revenue goal of the period, EUR.",
    "remaining_gap_reporting": "target - won so far - pipeline expected, EUR (from lead_requirements).",
    "average_won_deal_reporting": "Shrunk average won deal, EUR.",
    "lead_conversion_to_won": "Shrunk conversion of a lead to won.",
    "lead_conversion_to_won_low": "Lower end of its 90 % interval.",
    "lead_conversion_to_won_high": "Upper end of its 90 % interval.",
    "value_per_lead_reporting": "lead conversion to won x average won deal: expected revenue of one lead, EUR.",
    "value_rank": "1 = the segment where one lead is worth most.",
    "current_inflow_per_month": "New leads per month over the recent inflow months.",
    "current_share": "Share of today's lead inflow.",
    "recommended_leads_per_month": "Leads per month of the optimal mix.",
    "recommended_share": "Share of the recommended leads.",
    "change_leads_per_month": "recommended - current leads per month.",
    "lead_capacity_per_month": "Lead-generation capacity the mix must fit in (today's total inflow x capacity factor).",
    "is_target_reachable": "False when no mix within capacity reaches every line's gap (the mix then maximises revenue).",
    "optimiser_message": "What the solver (scipy linprog, HiGHS) said.",
    "inflow_recent_per_month": "New leads per month in the recent warning window.",
    "inflow_baseline_per_month": "New leads per month in the baseline window before it.",
    "inflow_change": "recent / baseline inflow - 1.",
    "inflow_p_value": "One-sided binomial test that the recent inflow rate is lower than the baseline's.",
    "win_rate_recent": "Win rate of the deals closed in the recent window.",
    "win_rate_baseline": "Win rate of the deals closed in the baseline window.",
    "win_rate_change": "recent / baseline win rate - 1.",
    "win_rate_p_value": "One-sided Fisher exact test that the recent win rate is lower.",
    "is_early_warning": "True when inflow or win rate fell by at least the threshold and the test is significant.",
    "warning_reason": "Which figure fell.",
}
