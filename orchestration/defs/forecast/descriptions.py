"""Table and column descriptions of the forecast marts; they become DuckDB comments BI users see."""

PIPELINE_FORECAST = (
    "One row per as-of date x period (each calendar month and quarter from the as-of quarter through the "
    "next) x business line x segment, with line totals (segment 'all') and the grand total (both 'all'). "
    "Expected won revenue in EUR from the deals open at the end of the as-of day (absorbing Markov chain "
    "over stages, age in stage, time-to-win from history) and from leads not yet created (recent inflow), "
    "P10/P50/P90 from a seeded simulation, and the CRM's weighted pipeline beside it. See docs/forecast.md."
)

PIPELINE_FORECAST_COLUMNS = {
    "as_of_date": "The run's as-of date: stage events up to the end of this day are known.",
    "period_type": "month or quarter.",
    "period_start": "First day of the month or quarter.",
    "period_end": "Last day of the month or quarter.",
    "business_line": "Business line (pipeline); 'all' on the grand total rows.",
    "segment": "Client segment (today's); 'all' on line and grand total rows.",
    "won_to_date_revenue": "Revenue already won in the period before the end of the as-of day, EUR.",
    "expected_open_pipeline_revenue": "Expected revenue won in the rest of the period from deals open "
    "now, EUR.",
    "expected_new_lead_revenue": "Expected revenue won in the period from leads not yet created, at the "
    "recent "
    "inflow rate, EUR.",
    "expected_revenue": "won_to_date_revenue + expected_open_pipeline_revenue + "
    "expected_new_lead_revenue, EUR.",
    "revenue_p10": "10th percentile of the period's won revenue (won to date included), EUR: the "
    "simulation's, widened by the backtest's model error (calibration_log_sd).",
    "revenue_p50": "Median of the period's won revenue over the simulation (won to date included), EUR.",
    "revenue_p90": "90th percentile of the period's won revenue (won to date included), EUR: the "
    "simulation's, widened by the backtest's model error (calibration_log_sd).",
    "naive_weighted_pipeline": "Naive baseline: sum of open deals' amount x the catalogue's stage "
    "probability, "
    "for deals whose expected close date falls in the period (overdue dates count in the first month), EUR.",
    "open_deal_count": "Deals open at the end of the as-of day in this line and segment.",
    "new_lead_daily_inflow": "Funnel entries per day over the recent inflow window (the new-lead rate used).",
    "calibration_log_sd": "Extra spread (log scale) the P10-P90 range of what is still to be won got "
    "from the errors of the backtest origins whose window had closed (1-month windows for months, 3-month "
    "for quarters); 0 = as simulated. See docs/forecast.md, Calibration.",
}

PIPELINE_FORECAST_DEALS = (
    "One row per as-of date x deal open at the end of the as-of day (its stage spell has not ended and the "
    "CRM record is not closed): P(win | stage, business line, segment, age in stage), the amount used, "
    "when it is expected to close if won, and its expected share of the current month and quarter."
)

PIPELINE_FORECAST_DEALS_COLUMNS = {
    "as_of_date": "The run's as-of date.",
    "current_quarter_start": "First day of the as-of date's quarter (the 'current quarter' of the "
    "columns below).",
    "deal_id": "Deal.",
    "business_line": "Business line (pipeline) of the deal.",
    "segment": "Today's segment of the deal's client ('unknown' without a client).",
    "stage_id": "Open stage the deal is in.",
    "stage_order": "Position of the stage in its pipeline.",
    "stage_entered_at": "When the deal entered the stage (UTC).",
    "days_in_stage": "Days (fractional) from entering the stage to the end of the as-of day.",
    "age_bucket": "0 = younger than the stage's median completed stay, then 1, 2, 4, 8, 16 x that median.",
    "deal_amount_reporting": "The deal's amount in EUR; empty when the CRM has none.",
    "is_amount_imputed": "True when the deal has no amount and the forecast uses its line x segment's "
    "average "
    "won deal size.",
    "forecast_amount": "Amount the forecast uses, EUR (the deal's, or the imputed average).",
    "crm_probability": "The catalogue's win probability of the stage (0-1).",
    "naive_weighted_amount": "forecast_amount x crm_probability, EUR (naive baseline).",
    "crm_expected_close_date": "Close date the owner expects (CRM).",
    "stage_win_probability": "P(win | stage, line, segment) from the absorbing Markov chain, before age.",
    "age_factor": "Factor of the deal's age bucket on P(win), learned from how stays that old ended.",
    "win_probability": "P(win) used: stage_win_probability x age_factor, within [0, 1].",
    "expected_won_amount": "win_probability x forecast_amount, EUR.",
    "median_days_to_win": "If won: median days from the end of the as-of day to the win.",
    "expected_close_date": "If won: the as-of cutoff plus median_days_to_win.",
    "close_date_p10": "If won: 10th percentile of the win date.",
    "close_date_p90": "If won: 90th percentile of the win date.",
    "probability_won_current_month": "P(the deal is won before the end of the as-of month).",
    "probability_won_current_quarter": "P(the deal is won before the end of the as-of quarter).",
    "expected_revenue_current_quarter": "probability_won_current_quarter x forecast_amount, EUR.",
    "timing_basis": "Which time-to-win history placed the deal: line_segment_stage_age, line_stage_age (won "
    "deals whose stay in the stage lasted at least as long), line_stage (any age), no_history (30 days).",
}

FORECAST_BACKTEST = (
    "One row per origin (first day of a month) x horizon (1 or 3 months) x business line (and 'all') x "
    "method (learned, naive, naive_unphased): the forecast made with only the stage events before the "
    "origin and each deal at the amount the CRM showed then (int_deal_amounts_known), against the revenue "
    "actually won in the window (deals whose first won entry falls in it, at their won amount, leads created "
    "after the origin included)."
)

FORECAST_BACKTEST_COLUMNS = {
    "origin_date": "Origin: the funnel is rebuilt from the events before this day's start; the model learns "
    "only from them.",
    "horizon_months": "1 = the origin's month; 3 = the origin's month and the two after.",
    "window_end_date": "First day after the forecast window.",
    "business_line": "Business line; 'all' for the total.",
    "method": "learned (chain + timing + new leads), naive (weighted pipeline placed by expected close "
    "date), "
    "naive_unphased (the whole weighted pipeline).",
    "forecast_revenue": "Forecast won revenue in the window, EUR (expected value for learned).",
    "forecast_p10": "learned only: calibrated 10th percentile of the won revenue, EUR (simulated_p10 "
    "widened by calibration_log_sd).",
    "forecast_p50": "learned only: median of the simulated won revenue, EUR.",
    "forecast_p90": "learned only: calibrated 90th percentile of the won revenue, EUR (simulated_p90 "
    "widened by calibration_log_sd).",
    "actual_won_revenue": "Revenue actually won in the window (deal amounts in EUR).",
    "error": "forecast_revenue - actual_won_revenue, EUR.",
    "percentage_error": "error / actual_won_revenue; empty when nothing was won.",
    "absolute_percentage_error": "|percentage_error|.",
    "is_actual_in_p10_p90": "learned only: forecast_p10 <= actual <= forecast_p90.",
    "simulated_p10": "learned only: 10th percentile of the simulated won revenue, EUR (before calibration).",
    "simulated_p90": "learned only: 90th percentile of the simulated won revenue, EUR (before calibration).",
    "is_actual_in_simulated_p10_p90": "learned only: simulated_p10 <= actual <= simulated_p90.",
    "calibration_log_sd": "learned only: extra spread (log scale) given to the simulated range: the "
    "conformal 80 % quantile of what the same horizon's earlier windows, closed by the origin, needed to "
    "hold their actual (0 = as simulated).",
    "calibration_scores": "learned only: how many earlier windows (every line and the total) the "
    "calibration had; below 4 the range stays as simulated.",
    "open_deal_count": "Deals open at the origin in the line (all lines for 'all').",
    "training_transitions": "Stage changes in the training window before the origin.",
    "input_fingerprint": "Hash of everything the origin's forecast read (the spells as known at the "
    "origin, the deal amounts known then, today's segments, the stage catalogue, the settings, the code "
    "version): "
    "a run recomputes an origin only when it changed.",
}

FORECAST_BACKTEST_SUMMARY = (
    "One row per horizon x business line (and 'all') x method: the backtest over all origins. MAPE = mean "
    "absolute percentage error over origins with revenue won, bias = mean percentage error, coverage = share "
    "of origins whose actual fell within P10-P90 (learned only)."
)

FORECAST_BACKTEST_SUMMARY_COLUMNS = {
    "horizon_months": "1 or 3 months.",
    "business_line": "Business line; 'all' for the total.",
    "method": "learned, naive or naive_unphased (see forecast_backtest).",
    "origins": "Number of origins.",
    "first_origin_date": "First origin.",
    "last_origin_date": "Last origin (its window has fully passed by the as-of date).",
    "mape": "Mean absolute percentage error.",
    "median_ape": "Median absolute percentage error.",
    "bias": "Mean percentage error (positive = over-forecast).",
    "p10_p90_coverage": "Share of origins with the actual within the calibrated P10-P90 (learned only; "
    "about 0.8 when honest).",
    "simulated_p10_p90_coverage": "Share of origins with the actual within the simulated P10-P90, before "
    "calibration (learned only).",
    "total_forecast_revenue": "Sum of the forecasts over origins, EUR.",
    "total_actual_won_revenue": "Sum of the actuals over origins, EUR.",
}

FORECAST_HISTORY = (
    "One row per run as-of date x period x business line x segment: every run's pipeline_forecast, kept. A "
    "run replaces only its own as-of date's rows."
)

FORECAST_HISTORY_DEALS = (
    "One row per run as-of date x deal open then: every run's pipeline_forecast_deals, kept. A run replaces "
    "only its own as-of date's rows."
)

FORECAST_CHANGES = (
    "One row per deal open in the latest run or the run before it (previous as-of date in "
    "forecast_history_deals): what happened to the deal between the two (added, won, lost, left_funnel, "
    "moved_forward, moved_backward, moved, amount_changed, unchanged) and its contribution to the change "
    "of the forecast. Rebuilt on every run."
)

FORECAST_CHANGES_COLUMNS = {
    "as_of_date": "As-of date of the latest run.",
    "previous_as_of_date": "As-of date of the run compared with.",
    "deal_id": "Deal.",
    "business_line": "Business line of the deal.",
    "segment": "Segment of the deal's client.",
    "change_type": "added, won, lost, left_funnel (deleted, excluded or closed in the CRM without a close "
    "event), moved_forward, moved_backward, moved, amount_changed, unchanged.",
    "previous_stage_id": "Stage in the previous run (empty if not open then).",
    "stage_id": "Stage in the latest run (empty if not open now).",
    "previous_win_probability": "P(win) in the previous run.",
    "win_probability": "P(win) in the latest run.",
    "previous_expected_won_amount": "Expected won amount in the previous run, EUR.",
    "expected_won_amount": "Expected won amount now, EUR: P(win) x amount while open, the amount once won, "
    "0 once lost or gone.",
    "contribution": "expected_won_amount - previous_expected_won_amount, EUR: the deal's share of the move.",
    "previous_expected_revenue_current_quarter": "Expected revenue in the quarter in the previous run, EUR.",
    "expected_revenue_current_quarter": "Expected revenue in the latest run's quarter, EUR (a deal won "
    "inside "
    "the quarter counts its amount).",
    "contribution_current_quarter": "Change of the deal's expected revenue in the quarter, EUR; empty "
    "when the "
    "two runs fall in different quarters.",
}
