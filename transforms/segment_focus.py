"""Segment focus: where a fixed lead-generation capacity reaches the targets with the fewest leads, and
which segments are turning down.

**Lead mix (a linear programme, `scipy.optimize.linprog`).** For the focus period (by default the first
target period that starts after the as-of date), each business line x segment s has a value per lead
v_s = C_1 x average won deal (shrunk rates from `lead_requirements`). Choose leads per month x_s over the
period's lead window (as many months as the period) to

    minimise  sum x_s
    such that sum_{s in line} months x v_s x_s >= gap of the line   (every line meets its own target)
              sum x_s <= capacity   (today's total inflow x `capacity_factor`)
              floor_share x inflow_s <= x_s <= ceiling_factor x inflow_s

The bounds say a segment's market cannot absorb unlimited leads, and that no segment is dropped
overnight. The gap of a line is its target minus what is won and what the open pipeline is expected to
deliver. When no mix within capacity reaches every line's gap, the programme instead maximises the
revenue the capacity reaches (same bounds) and the rows say `is_target_reachable = false`.

**Early warning.** Per line x segment, the last `recent_months` against the `baseline_months` before
them: lead inflow per month (a one-sided binomial test of the recent share of the leads against the
share of time, i.e. a Poisson rate comparison) and win rate of the deals closed in each window (one-sided
Fisher exact test). A segment is flagged when a figure fell by at least `drop_threshold` (relative) and
the test's p-value is below `p_value_threshold`.

Where it runs: the window counts per line x segment are DuckDB SQL on `transforms.funnel`'s deal
outcomes; the programme and the tests run on them in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from scipy import optimize, stats

from transforms.exact import exact_sum
from transforms.funnel import line_segment_pairs, line_segment_universe, materialize_deal_facts
from transforms.lead_requirements import EXPECTED_MONEY_SCALE
from transforms.sql import Tables, date_literal, frame_tables


@dataclass(frozen=True)
class FocusSettings:
    capacity_factor: float = 1.0
    floor_share: float = 0.5
    ceiling_factor: float = 2.0
    recent_months: int = 3
    baseline_months: int = 12
    drop_threshold: float = 0.3
    p_value_threshold: float = 0.05


def focus_period_start(targets: pl.LazyFrame, as_of: date) -> date | None:
    """The first target period that starts after the as-of date: the one new leads can still change."""
    starts = targets.filter(pl.col("period_start") > as_of).select(pl.col("period_start").min()).collect()
    return starts.item()


def optimise_lead_mix(
    cells: pl.DataFrame, capacity: float, settings: FocusSettings
) -> tuple[np.ndarray, str, bool]:
    """Leads per month per row of `cells` (business_line, value_per_lead, inflow, gap_per_month), the
    solver's message, and whether every line's gap is reached."""
    value = cells["value_per_lead_reporting"].fill_null(0.0).to_numpy()
    inflow = cells["current_inflow_per_month"].to_numpy()
    bounds = list(zip(settings.floor_share * inflow, settings.ceiling_factor * inflow, strict=True))
    lines = cells["business_line"].to_list()
    line_names = sorted(set(lines))
    gaps = cells.group_by("business_line").agg(pl.col("gap_per_month").first())
    gap_of = dict(zip(gaps["business_line"], gaps["gap_per_month"], strict=True))
    # linprog takes A_ub x <= b_ub: revenue >= gap becomes -revenue <= -gap.
    a_ub = [[-value[i] if lines[i] == line else 0.0 for i in range(len(lines))] for line in line_names]
    b_ub = [-gap_of[line] for line in line_names]
    a_ub.append([1.0] * len(lines))
    b_ub.append(capacity)
    result = optimize.linprog(np.ones(len(lines)), A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if result.status == 0:
        return result.x, result.message, True
    fallback = optimize.linprog(
        -value, A_ub=[[1.0] * len(lines)], b_ub=[capacity], bounds=bounds, method="highs"
    )
    if fallback.status == 0:
        return fallback.x, f"targets out of reach; maximised revenue instead: {fallback.message}", False
    return np.full(len(lines), np.nan), f"no feasible mix: {fallback.message}", False


def _warning_counts(t: Tables, as_of: date, settings: FocusSettings) -> pl.LazyFrame:
    """Per line x segment: deals entering the funnel, and deals closed (won), in the recent window and
    in the baseline before it."""
    recent_from = pl.select(pl.lit(as_of).dt.offset_by(f"-{settings.recent_months}mo")).item()
    baseline_from = pl.select(pl.lit(recent_from).dt.offset_by(f"-{settings.baseline_months}mo")).item()
    recent, baseline, today = date_literal(recent_from), date_literal(baseline_from), date_literal(as_of)

    def in_window(day: str, is_recent: bool) -> str:
        if is_recent:
            return f"{day} > {recent} and {day} <= {today}"
        return f"{day} > {baseline} and {day} <= {recent}"

    entered = "cast(entered_funnel_at as date)"
    closed = "cast(coalesce(won_at, lost_at) as date)"
    return t.frame(
        f"""
        select business_line, segment,
            count(*) filter (where {in_window(entered, True)}) as inflow_recent,
            count(*) filter (where {in_window(entered, False)}) as inflow_baseline,
            count(*) filter (where {in_window(closed, True)} and status = 'won') as won_recent,
            count(*) filter (where {in_window(closed, True)}) as closed_recent,
            count(*) filter (where {in_window(closed, False)} and status = 'won') as won_baseline,
            count(*) filter (where {in_window(closed, False)}) as closed_baseline
        from {{outcomes}}
        group by business_line, segment
        """
    ).lazy()


def _p_values(frame: pl.DataFrame, settings: FocusSettings) -> tuple[list[float | None], list[float | None]]:
    share = settings.recent_months / (settings.recent_months + settings.baseline_months)
    inflow_p, win_p = [], []
    for row in frame.iter_rows(named=True):
        total = row["inflow_recent"] + row["inflow_baseline"]
        inflow_p.append(
            stats.binomtest(row["inflow_recent"], total, share, alternative="less").pvalue if total else None
        )
        if row["closed_recent"] and row["closed_baseline"]:
            table = [
                [row["won_recent"], row["closed_recent"] - row["won_recent"]],
                [row["won_baseline"], row["closed_baseline"] - row["won_baseline"]],
            ]
            win_p.append(stats.fisher_exact(table, alternative="less").pvalue)
        else:
            win_p.append(None)
    return inflow_p, win_p


def segment_focus(
    lead_requirements: pl.LazyFrame,
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    settings: FocusSettings | None = None,
    period_start: date | None = None,
) -> pl.LazyFrame:
    """One row per business line x segment: value per lead, today's and the recommended lead mix for the
    focus period, and the early-warning figures. The programme needs numbers, so this collects once."""
    sources = {"transitions": transitions, "dim_deals": dim_deals, "dim_clients": dim_clients}
    with frame_tables(sources) as t:
        return segment_focus_from_tables(t, lead_requirements, targets, as_of, settings, period_start)


def segment_focus_from_tables(
    t: Tables,
    lead_requirements: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    settings: FocusSettings | None = None,
    period_start: date | None = None,
) -> pl.LazyFrame:
    """`segment_focus` with the deal sources (`transforms.funnel.DEAL_SOURCES`) bound in `t`."""
    settings = settings or FocusSettings()
    period_start = period_start or focus_period_start(targets, as_of)
    materialize_deal_facts(t, as_of)
    universe = line_segment_universe(line_segment_pairs(t).lazy(), targets).filter(
        (pl.col("business_line") != "(all)") & (pl.col("segment") != "(all)")
    )
    requirements = lead_requirements.filter(
        (pl.col("period_start") == period_start) & (pl.col("stage_number") == 1)
    ).select(
        "business_line",
        "segment",
        "period_start",
        "period_end",
        "revenue_target_reporting",
        "remaining_gap_reporting",
        "average_won_deal_reporting",
        pl.col("conversion_to_won").alias("lead_conversion_to_won"),
        pl.col("conversion_to_won_low").alias("lead_conversion_to_won_low"),
        pl.col("conversion_to_won_high").alias("lead_conversion_to_won_high"),
        "recent_inflow_per_month",
    )
    cells = (
        universe.join(requirements, on=["business_line", "segment"], how="left")
        .with_columns(
            pl.col(
                "revenue_target_reporting", "remaining_gap_reporting", "recent_inflow_per_month"
            ).fill_null(0.0),
            value_per_lead_reporting=pl.col("lead_conversion_to_won") * pl.col("average_won_deal_reporting"),
            period_months=((pl.col("period_end") - pl.col("period_start")).dt.total_days() + 1) * 12 / 365.25,
        )
        .rename({"recent_inflow_per_month": "current_inflow_per_month"})
        .with_columns(
            gap_per_month=exact_sum(pl.col("remaining_gap_reporting"), EXPECTED_MONEY_SCALE).over(
                "business_line"
            )
            / pl.col("period_months").max().over("business_line")
        )
        .join(_warning_counts(t, as_of, settings), on=["business_line", "segment"], how="left")
        .with_columns(
            pl.col(
                "inflow_recent",
                "inflow_baseline",
                "won_recent",
                "closed_recent",
                "won_baseline",
                "closed_baseline",
            ).fill_null(0)
        )
        .sort("business_line", "segment")
        .collect()
    )
    capacity = settings.capacity_factor * float(cells["current_inflow_per_month"].sum())
    leads, message, reachable = optimise_lead_mix(cells, capacity, settings)
    inflow_p, win_p = _p_values(cells, settings)
    recent, baseline = settings.recent_months, settings.baseline_months
    return (
        cells.lazy()
        .with_columns(
            recommended_leads_per_month=pl.Series(leads, dtype=pl.Float64),
            inflow_p_value=pl.Series(inflow_p, dtype=pl.Float64),
            win_rate_p_value=pl.Series(win_p, dtype=pl.Float64),
            is_target_reachable=pl.lit(reachable),
            optimiser_message=pl.lit(message),
            lead_capacity_per_month=pl.lit(capacity),
            inflow_recent_per_month=pl.col("inflow_recent") / recent,
            inflow_baseline_per_month=pl.col("inflow_baseline") / baseline,
            win_rate_recent=pl.when(pl.col("closed_recent") > 0).then(
                pl.col("won_recent") / pl.col("closed_recent")
            ),
            win_rate_baseline=pl.when(pl.col("closed_baseline") > 0).then(
                pl.col("won_baseline") / pl.col("closed_baseline")
            ),
        )
        .with_columns(
            current_share=pl.col("current_inflow_per_month") / pl.col("current_inflow_per_month").sum(),
            recommended_share=pl.col("recommended_leads_per_month")
            / pl.col("recommended_leads_per_month").sum(),
            change_leads_per_month=pl.col("recommended_leads_per_month") - pl.col("current_inflow_per_month"),
            value_rank=pl.col("value_per_lead_reporting").rank("min", descending=True).cast(pl.Int64),
            inflow_change=pl.when(pl.col("inflow_baseline_per_month") > 0).then(
                pl.col("inflow_recent_per_month") / pl.col("inflow_baseline_per_month") - 1
            ),
            win_rate_change=pl.when(pl.col("win_rate_baseline") > 0).then(
                pl.col("win_rate_recent") / pl.col("win_rate_baseline") - 1
            ),
        )
        .with_columns(
            is_inflow_warning=(pl.col("inflow_change") <= -settings.drop_threshold)
            & (pl.col("inflow_p_value") < settings.p_value_threshold),
            is_win_rate_warning=(pl.col("win_rate_change") <= -settings.drop_threshold)
            & (pl.col("win_rate_p_value") < settings.p_value_threshold),
        )
        .with_columns(pl.col("is_inflow_warning", "is_win_rate_warning").fill_null(False))
        .with_columns(
            is_early_warning=pl.col("is_inflow_warning") | pl.col("is_win_rate_warning"),
            warning_reason=pl.concat_str(
                pl.when("is_inflow_warning").then(pl.lit("lead inflow down")),
                pl.when("is_win_rate_warning").then(pl.lit("win rate down")),
                separator="; ",
                ignore_nulls=True,
            ).replace("", None),
        )
        .select(
            "business_line",
            "segment",
            "period_start",
            "period_end",
            "revenue_target_reporting",
            "remaining_gap_reporting",
            "average_won_deal_reporting",
            "lead_conversion_to_won",
            "lead_conversion_to_won_low",
            "lead_conversion_to_won_high",
            "value_per_lead_reporting",
            "value_rank",
            "current_inflow_per_month",
            "current_share",
            "recommended_leads_per_month",
            "recommended_share",
            "change_leads_per_month",
            "lead_capacity_per_month",
            "is_target_reachable",
            "optimiser_message",
            "inflow_recent_per_month",
            "inflow_baseline_per_month",
            "inflow_change",
            "inflow_p_value",
            "win_rate_recent",
            "win_rate_baseline",
            "win_rate_change",
            "win_rate_p_value",
            "is_early_warning",
            "warning_reason",
        )
    )
