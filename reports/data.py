"""The report's figures, read from the published file: small frames, one per section."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl


@dataclass(frozen=True)
class ReportData:
    as_of_date: date
    published_version: int
    funnel_period: str
    funnel: pl.DataFrame
    forecast: pl.DataFrame
    backtest: pl.DataFrame
    lead_gap: pl.DataFrame
    lead_period: str
    pareto: pl.DataFrame
    abc_counts: pl.DataFrame
    scorecard: pl.DataFrame
    effort_without_return: pl.DataFrame
    data_quality: pl.DataFrame
    publication_log: pl.DataFrame


def _frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    return conn.sql(sql, params=params).pl() if params else conn.sql(sql).pl()


def load_report_data(conn: duckdb.DuckDBPyConnection) -> ReportData:
    """Read every section from the published marts (a section whose mart is absent comes out empty)."""
    as_of = conn.execute("SELECT max(as_of_date) FROM marts.dim_deals").fetchall()[0][0]
    version = conn.execute(
        "SELECT coalesce(max(version), 0) FROM quality.publication_log WHERE status = 'published'"
    ).fetchall()[0][0]
    # The last complete quarter: the funnel of a quarter still running would look artificially thin.
    quarter = conn.execute(
        "SELECT max(period_start) FROM marts.funnel_conversion "
        "WHERE period_grain = 'quarter' AND period_end < ?",
        [as_of],
    ).fetchall()[0][0]
    funnel = _frame(
        conn,
        """
        SELECT f.business_line, f.stage_number, f.stage_name, f.reached_count, f.step_conversion,
               f.cumulative_conversion, f.conversion_to_won, f.time_in_stage_median_days,
               f.time_in_stage_p80_days, d.open_now, d.sla_breached_now
        FROM marts.funnel_conversion f
        LEFT JOIN (
            SELECT business_line, current_stage_id, count(*) AS open_now,
                   count(*) FILTER (WHERE is_sla_breached) AS sla_breached_now
            FROM marts.dim_deals WHERE status = 'open' GROUP BY ALL
        ) d ON d.business_line = f.business_line AND d.current_stage_id = f.stage_id
        WHERE f.period_grain = 'quarter' AND f.period_start = ? AND f.segment = '(all)'
          AND f.business_line <> '(all)'
        ORDER BY f.business_line, f.stage_number""",
        [quarter],
    )
    forecast = _frame(
        conn,
        """
        SELECT period_type, period_start, expected_revenue, revenue_p10, revenue_p50, revenue_p90,
               naive_weighted_pipeline, won_to_date_revenue
        FROM marts.pipeline_forecast WHERE business_line = 'all' AND segment = 'all'
        ORDER BY period_type, period_start""",
    )
    backtest = _frame(
        conn,
        """
        SELECT horizon_months, method, origins, mape, bias, p10_p90_coverage
        FROM marts.forecast_backtest_summary WHERE business_line = 'all' ORDER BY horizon_months, method""",
    )
    lead_period = conn.execute(
        "SELECT min(period_start) FROM marts.lead_requirements WHERE period_end >= ?", [as_of]
    ).fetchall()[0][0]
    lead_gap = _frame(
        conn,
        """
        SELECT business_line, segment, revenue_target_reporting, won_so_far_reporting,
               pipeline_expected_amount_reporting, remaining_gap_reporting, coverage, leads_needed,
               leads_needed_per_month, recent_inflow_per_month, lead_gap_per_month
        FROM marts.lead_requirements WHERE period_start = ? AND stage_number = 1
        ORDER BY remaining_gap_reporting DESC""",
        [lead_period],
    )
    pareto = _frame(
        conn,
        """
        SELECT row_number() OVER (ORDER BY turnover_reporting DESC) / count(*) OVER () AS client_share,
               abc_turnover_cumulative_share AS turnover_share, abc_turnover_class
        FROM marts.client_segments WHERE turnover_reporting > 0 ORDER BY client_share""",
    )
    abc_counts = _frame(
        conn,
        """
        SELECT abc_turnover_class AS class, count(*) AS clients, sum(turnover_reporting) AS turnover
        FROM marts.client_segments GROUP BY ALL ORDER BY 1""",
    )
    scorecard = _frame(
        conn,
        """
        SELECT segment_label, turnover_share, margin_share, win_rate, average_won_deal_reporting,
               price_sensitivity_class, turnover_change, lead_inflow_change, win_rate_change,
               resilience_rank, headroom_reporting, focus_rank
        FROM marts.segment_scorecard WHERE grouping = 'industry_use_case'
        ORDER BY focus_rank NULLS LAST LIMIT 15""",
    )
    effort = _frame(
        conn,
        """
        SELECT c.client_name, s.segment, s.effort_hours, s.margin_reporting, s.margin_per_effort_hour
        FROM marts.client_segments s JOIN marts.dim_clients c USING (client_id)
        WHERE s.is_high_effort_low_return ORDER BY s.effort_hours DESC LIMIT 15""",
    )
    data_quality = _frame(
        conn,
        """
        SELECT 'quarantine' AS place, table_name, rule, count(*) AS records
        FROM quality.quarantine GROUP BY ALL
        UNION ALL
        SELECT 'integrity (' || action || ')', table_name, rule, count(*)
        FROM quality.integrity_issues GROUP BY ALL
        ORDER BY place, records DESC""",
    )
    publication_log = _frame(
        conn,
        """
        SELECT version, attempted_at, status, reason FROM quality.publication_log
        ORDER BY version DESC LIMIT 5""",
    )
    return ReportData(
        as_of_date=as_of,
        published_version=version,
        funnel_period=f"{quarter:%Y}-Q{(quarter.month - 1) // 3 + 1}" if quarter else "no complete quarter",
        funnel=funnel,
        forecast=forecast,
        backtest=backtest,
        lead_gap=lead_gap,
        lead_period=f"{lead_period:%Y}-Q{(lead_period.month - 1) // 3 + 1}" if lead_period else "none",
        pareto=pareto,
        abc_counts=abc_counts,
        scorecard=scorecard,
        effort_without_return=effort,
        data_quality=data_quality,
        publication_log=publication_log,
    )
