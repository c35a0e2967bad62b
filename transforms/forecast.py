"""Forecast of won revenue from the open funnel and the leads still to come.

Everything is computed "as of" a cutoff instant: only stage events strictly before it are known (the
funnel is rebuilt from the spells, never from the deals' current state), and the model is learned
from the `training_window_days` before it. The live forecast uses the end of the as-of day as cutoff;
the backtest uses the first instant of each month.

Open at the cutoff: a deal whose spell in an open stage started before it and had not ended, unless
its CRM record says it closed before the cutoff (a close event missing from the log would otherwise
keep it open, and forecast, forever). Segment and amount are today's (the marts keep no history of
them); that is the one thing the backtest takes from after its origin.

The learned method, per open deal:
- P(win | stage, business line, segment): absorbing Markov chain (`transforms.forecast_chain`), the
  segment's rows shrunk toward its line;
- age in stage: the deal's days in stage over the stage's median completed stay gives an age bucket;
  the bucket's factor (how often stays that reached that age went on to a win within `age_follow_up_days`,
  relative to all stays, pooled over stages and shrunk toward 1) scales P(win);
- timing: the days from entering a stage to winning, taken from won deals of the window whose stay in
  that stage lasted at least as long as this deal's age; the draw minus the age is the deal's
  remaining time (pools: line x segment x stage, else line x stage with every segment's stays put on
  one time scale (its pace relative to its line's), each needing `min_timing_samples`; else that
  scaled line x stage pool ignoring age);
- amount: the deal's amount in EUR (dim_deals.amount_reporting, today's; the backtest passes the
  amounts known at its origin, `transforms.forecast_backtest.amounts_known_at`); without one, the
  average won deal of its line x segment in the window (flagged).

Leads not yet created: the line x segment's funnel entries per day over the last
`inflow_window_days`, times P(win | entry stage mix), placed in months by the observed created-to-won
cycle times, valued at won deal sizes drawn from the window.

Totals: expected values are sums of P(win) x amount x the share of the deal's timing draws in the
period; P10, P50, P90 come from `simulations` joint draws (win ~ Bernoulli on the log-odds plus a shock
common to all deals, its spread the month-to-month variation of win rates beyond binomial noise;
timing from the pools; new won deals ~ Poisson with the inflow rate drawn from its Gamma posterior;
amounts from the won pool) with a numpy Generator seeded from the cutoff date. Frames are sorted and
group-by float sums taken over integers (`exact_sum`), so two runs on the same data give the same
figures to the last bit.

Naive baseline: the weighted pipeline, open deals' amount x the catalogue's stage probability, placed
in the period of each deal's expected close date (an overdue date counts in the first period), as a
CRM shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from transforms.exact import exact_sum
from transforms.forecast_calibration import log_variance_for, widened
from transforms.forecast_chain import (
    PROBABILITY_SCALE,
    age_factors,
    age_factors_from_tables,
    stage_win_probabilities,
    transitions_known_at,
)
from transforms.funnel import UNKNOWN_SEGMENT
from transforms.sql import Tables, timestamp_literal

DAY_US = 86_400e6
DAYS_PER_US = 1 / DAY_US
"""Durations in days are microseconds x DAYS_PER_US, a multiplication: Polars divides a column by a
scalar as a multiplication by its reciprocal, except in a chunk of one row, where it divides, so the same
stay could come out one bit apart depending on how its frame was cut. The SQL twins multiply by the same
number (`repr(DAYS_PER_US)`)."""
TOTAL = "all"
_GROUP_STRIDE = 1e7  # days; longer than any stay, so group * stride + stay sorts by group then stay


@dataclass(frozen=True)
class ForecastSettings:
    """Knobs of the learned forecast; the defaults are what the warehouse runs."""

    training_window_days: int = 365
    """Transitions, won deals and deal sizes of this many days before the cutoff train the model."""
    inflow_window_days: int = 91
    """Recent inflow rate of new leads: funnel entries over this many days before the cutoff."""
    segment_prior_strength: float = 20.0
    """Pseudo-exits pulling a segment's chain row toward its business line's."""
    age_prior_strength: float = 10.0
    """Pseudo-exits pulling an age bucket's factor toward 1 (no age effect)."""
    age_bucket_edges: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    """Age buckets, in multiples of the stage's median completed stay (first bucket from 0)."""
    age_follow_up_days: float = 180.0
    """A stay that has not left its stage this long after reaching an age bucket counts as not won."""
    min_timing_samples: int = 20
    """Smallest timing pool used before falling back to a coarser one."""
    timing_scale_prior_strength: float = 3.0
    """Pseudo-rows pulling a segment's time scale (its pace through a stage relative to its line's)
    toward 1. Small: the scale is a mean of logs, precise after a few won deals, and the segments of
    a line differ by a factor of two or more (the generator's duration multipliers run 0.6 to 2)."""
    simulations: int = 2000
    """Joint draws behind P10/P50/P90."""


@dataclass(frozen=True)
class Period:
    """A forecast period: [start_at, end_at) clipped to start at the cutoff; months are disjoint."""

    period_type: str
    period_start: date
    period_end: date
    month_indexes: tuple[int, ...]


@dataclass(frozen=True)
class ForecastResult:
    """Per period x line x segment (with totals) figures and the per-deal table of one cutoff."""

    periods: pl.DataFrame
    deals: pl.DataFrame


MONEY_SCALE = 100.0  # cents: money sums are exact (see transforms.exact)


def _days_since(column: str, cutoff_at: datetime) -> pl.Expr:
    return (pl.col(column) - pl.lit(cutoff_at)).dt.total_microseconds() * DAYS_PER_US


def _days_between(start: str, end: str) -> pl.Expr:
    return (pl.col(end) - pl.col(start)).dt.total_microseconds() * DAYS_PER_US


SPELL_ORDER = ["deal_id", "entered_at", "stage_id"]
"""The order of funnel_spells' rows (one spell per deal, entry time and stage)."""

# What funnel_spells reads of each source (the asset reads only these).
SPELL_COLUMNS = (
    "deal_id",
    "pipeline_id",
    "stage_id",
    "stage_order",
    "is_won",
    "is_lost",
    "is_terminal",
    "entered_at",
    "exited_at",
    "from_stage_id",
    "from_entered_at",
    "entry_direction",
)
DEAL_COLUMNS = (
    "deal_id",
    "business_line",
    "client_id",
    "amount_reporting",
    "expected_close_date",
    "crm_closed_at",
)


def funnel_spells(
    spells: pl.LazyFrame,
    deals: pl.LazyFrame,
    clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    spells_sorted: bool = False,
) -> pl.LazyFrame:
    """One row per spell with what the forecast needs of its deal (line, today's segment and amount,
    expected close date, when the CRM record says it closed) and its stage (CRM probability), in
    SPELL_ORDER. Sources: int_deal_stage_spells, dim_deals (DEAL_COLUMNS), dim_clients, stg_crm__stages.

    `spells_sorted`: the spells come in SPELL_ORDER already (sorted by DuckDB as they are read); the
    joins then keep their order and the frame is not sorted again. At SF100 the spells are 40M rows
    of 19 columns, and sorting them here meant holding a second copy of the frame."""
    deal_columns = deals.select(
        "deal_id",
        "business_line",
        "client_id",
        pl.col("amount_reporting").cast(pl.Float64),
        "expected_close_date",
        "crm_closed_at",
    )
    segments = clients.select("client_id", "segment")
    crm = stages.select("pipeline_id", "stage_id", pl.col("win_probability").alias("crm_probability")).unique(
        subset=["pipeline_id", "stage_id"]
    )
    order = "left" if spells_sorted else "none"
    joined = (
        spells.select(SPELL_COLUMNS)
        .join(deal_columns, on="deal_id", how="inner", maintain_order=order)
        .join(segments, on="client_id", how="left", maintain_order=order)
        .join(crm, on=["pipeline_id", "stage_id"], how="left", maintain_order=order)
        .with_columns(
            segment=pl.col("segment").fill_null(UNKNOWN_SEGMENT),
            from_stage_days=_days_between("from_entered_at", "entered_at"),
        )
        .drop("client_id")
    )
    # A fixed row order makes every float sum, and so every figure, identical from run to run: a
    # group-by over rows in a fixed order sums them in a fixed order (not so after a join, whose
    # output order is free, hence the sorts before aggregating below).
    return joined if spells_sorted else joined.sort(SPELL_ORDER)


FORECAST_SPELLS_SQL = f"""
    select deals.business_line, deals.segment, spells.from_stage_id, spells.stage_id, spells.is_won,
        spells.is_lost, spells.is_terminal, spells.entered_at, spells.exited_at, spells.entry_direction,
        spells.from_entered_at, deals.crm_closed_at,
        cast(epoch_us(spells.entered_at) - epoch_us(spells.from_entered_at) as double) * {DAYS_PER_US!r}
            as from_stage_days
    from {{spells}} as spells
    inner join {{forecast_deals}} as deals on spells.deal_id = deals.deal_id
"""
"""`funnel_spells` in SQL, for `{forecast_spells}` over the warehouse: what the age factors read of
every spell (`transforms.forecast_chain.AGE_SPELL_COLUMNS`). `{spells}` is int_deal_stage_spells,
`{forecast_deals}` one row per deal with its line, segment (a deal without a client's in UNKNOWN_SEGMENT)
and CRM close (`transforms.forecast_backtest.FINGERPRINT_DEALS_SQL`); the deals the inner join leaves
out are those `funnel_spells` leaves out."""


def window_deals_sql(cutoff_at: datetime, settings: ForecastSettings) -> str:
    """SQL over `{spells}` (int_deal_stage_spells): the deals the forecast at `cutoff_at` reads beyond its
    age factors and segments (`learn_funnel_model` with `history`): those with a spell entered in the
    training window or later, or a stay that lasts into it or is still open. A deal closed before the
    window counts only in the age factors."""
    window_start = timestamp_literal(cutoff_at - timedelta(days=settings.training_window_days))
    return f"""
        select distinct deal_id from {{spells}}
        where entered_at >= {window_start} or exited_at >= {window_start}
            or (exited_at is null and not is_terminal)
    """


def spells_known_at(spells: pl.LazyFrame, cutoff_at: datetime) -> pl.LazyFrame:
    """The spells as they looked at `cutoff_at`: later spells dropped, a stay still going on reopened.

    Every step of the forecast reads only this, so nothing after the cutoff can leak in."""
    return spells.filter(pl.col("entered_at") < cutoff_at).with_columns(
        exited_at=pl.when(pl.col("exited_at") < cutoff_at).then(pl.col("exited_at"))
    )


def open_deals_at(known_spells: pl.LazyFrame, cutoff_at: datetime) -> pl.LazyFrame:
    """One row per deal in an open stage at the cutoff, with its days in that stage.

    A deal whose CRM record was closed before the cutoff is not open, even when the log lacks its
    close event (a history gap): it would sit in the pipeline forever and never be won."""
    return known_spells.filter(
        pl.col("exited_at").is_null()
        & ~pl.col("is_terminal")
        & (pl.col("crm_closed_at").is_null() | (pl.col("crm_closed_at") >= cutoff_at))
    ).with_columns(days_in_stage=-_days_since("entered_at", cutoff_at))


def won_deals(spells: pl.LazyFrame, start_at, end_at) -> pl.LazyFrame:
    """One row per deal whose first entry into a won stage in [start_at, end_at) falls there."""
    return (
        spells.filter(pl.col("is_won") & (pl.col("entered_at") >= start_at) & (pl.col("entered_at") < end_at))
        .group_by("deal_id")
        .agg(
            won_at=pl.col("entered_at").min(),
            business_line=pl.col("business_line").first(),
            segment=pl.col("segment").first(),
            amount_reporting=pl.col("amount_reporting").first(),
        )
        .sort("deal_id")
    )


@dataclass(frozen=True)
class FunnelModel:
    """What was learned from the window before a cutoff."""

    stage_win: pl.DataFrame
    age: pl.DataFrame
    timing: pl.DataFrame
    cycles: pl.DataFrame
    won_sizes: pl.DataFrame
    new_leads: pl.DataFrame
    transitions_observed: int
    win_odds_sigma: float
    """Month-to-month spread of the log-odds of winning beyond binomial noise: a shock common to all
    deals (market mood), drawn once per simulation."""


LEARNING_ENGINE = "streaming"
"""Polars engine of the model's queries over the known spells. Polars' streaming engine learned one
origin of the SF10 benchmark (4M spells) in 1.2-1.5 s against 2.1-2.6 s in memory, with the same model;
for the marts, which mostly run in DuckDB, it made no difference, so it is used here only."""


def learn_funnel_model(
    known_spells: pl.LazyFrame,
    stages: pl.DataFrame,
    cutoff_at: datetime,
    settings: ForecastSettings,
    history: Tables | None = None,
) -> FunnelModel:
    """Learn the chain, age factors, timing pools, deal sizes and inflow from spells before the cutoff.

    Only the age factors and the list of segments read the whole history; the rest reads the training
    window, and the deals of its spells. `history`: `{forecast_spells}` bound to every spell
    (`transforms.forecast_chain.AGE_SPELL_COLUMNS`), for the age factors and the segments, when
    `known_spells` holds only the deals the window needs (`window_deals_sql`); by default both come from
    `known_spells`."""
    window_start = cutoff_at - timedelta(days=settings.training_window_days)
    transitions = transitions_known_at(known_spells, cutoff_at, window_start).collect(engine=LEARNING_ENGINE)
    if history is None:
        segments = known_spells.select(pl.col("segment").unique()).collect(engine=LEARNING_ENGINE)
    else:
        known = f"entered_at < {timestamp_literal(cutoff_at)}"
        segments = history.frame(f"select distinct segment from {{forecast_spells}} where {known}")
    segments = sorted(segments.get_column("segment"))
    stage_win = stage_win_probabilities(transitions, stages, segments, settings.segment_prior_strength)
    age_args = (
        stage_win.lazy().filter(pl.col("segment") == TOTAL),
        cutoff_at,
        settings.age_bucket_edges,
        settings.age_follow_up_days,
        settings.age_prior_strength,
    )
    if history is None:
        age = age_factors(known_spells, *age_args)
    else:
        age = age_factors_from_tables(history, *age_args)

    won = won_deals(known_spells, window_start, cutoff_at)
    timing = (
        known_spells.join(won.select("deal_id", "won_at"), on="deal_id", how="inner")
        .filter(~pl.col("is_terminal") & (pl.col("entered_at") < pl.col("won_at")))
        .select(
            "business_line",
            "segment",
            "stage_id",
            stay_days=_days_between("entered_at", "exited_at"),
            days_to_won=_days_between("entered_at", "won_at"),
        )
        .sort(pl.all())
        .collect(engine=LEARNING_ENGINE)
    )
    timing = _with_time_scales(timing, settings.timing_scale_prior_strength)
    entries = known_spells.filter(pl.col("from_stage_id").is_null())
    cycles = (
        entries.join(won.select("deal_id", "won_at"), on="deal_id", how="inner")
        .select("business_line", "segment", days_to_won=_days_between("entered_at", "won_at"))
        .sort(pl.all())
        .collect(engine=LEARNING_ENGINE)
    )
    won_sizes = (
        won.filter(pl.col("amount_reporting").is_not_null())
        .select("business_line", "segment", "amount_reporting")
        .sort(pl.all())
        .collect(engine=LEARNING_ENGINE)
    )
    inflow_start = cutoff_at - timedelta(days=settings.inflow_window_days)
    new_leads = _new_lead_rates(entries, stage_win, inflow_start, window_start, cutoff_at, settings).collect(
        engine=LEARNING_ENGINE
    )
    return FunnelModel(
        stage_win=stage_win,
        age=age,
        timing=timing,
        cycles=cycles,
        won_sizes=won_sizes,
        new_leads=new_leads,
        transitions_observed=transitions.height,
        win_odds_sigma=win_odds_volatility(known_spells, window_start, cutoff_at),
    )


def _with_time_scales(timing: pl.DataFrame, prior_strength: float) -> pl.DataFrame:
    """The timing pool with each row's segment time scale, and its stay and days to won in that scale.

    A segment's deals move through a line's stages at their own pace (enterprise and public-sector
    deals take longer, small ones less): time scale = exp(mean log days to won of the segment's rows
    minus the line's, per stage), shrunk toward 1 in log space with `prior_strength` pseudo-rows. Rows
    divided by their segment's scale can be pooled over segments (an accelerated-failure-time view),
    which the timing fallback does instead of mixing fast and slow segments as they are."""
    if timing.height == 0:
        return timing.with_columns(
            time_scale=pl.lit(None, dtype=pl.Float64),
            scaled_stay_days=pl.lit(None, dtype=pl.Float64),
            scaled_days_to_won=pl.lit(None, dtype=pl.Float64),
        )
    log_days = pl.col("days_to_won").clip(lower_bound=1.0 / 24).log()
    line_keys, keys = ["business_line", "stage_id"], ["business_line", "segment", "stage_id"]
    line = timing.group_by(line_keys).agg(line_log=exact_sum(log_days, PROBABILITY_SCALE) / pl.len())
    scales = (
        timing.group_by(keys)
        .agg(n=pl.len(), segment_log=exact_sum(log_days, PROBABILITY_SCALE) / pl.len())
        .join(line, on=line_keys, how="left")
        .with_columns(
            time_scale=(
                pl.col("n") / (pl.col("n") + prior_strength) * (pl.col("segment_log") - pl.col("line_log"))
            ).exp()
        )
        .select(*keys, "time_scale")
    )
    return (
        timing.join(scales, on=keys, how="left")
        .with_columns(
            scaled_stay_days=pl.col("stay_days") / pl.col("time_scale"),
            scaled_days_to_won=pl.col("days_to_won") / pl.col("time_scale"),
        )
        .sort(pl.all())
    )


def win_odds_volatility(known_spells: pl.LazyFrame, window_start: datetime, cutoff_at: datetime) -> float:
    """Spread of the monthly log-odds of won among closed deals beyond what binomial noise explains.

    Per business line and month of the window: r = won / (won + lost) closes; the variance of
    logit(r) across months minus its mean sampling variance 1 / (n r (1 - r)), pooled over lines,
    floored at 0. Deals of one period share the market they close in; without this the simulated
    range would treat every deal as independent and be too narrow."""
    monthly = (
        known_spells.filter(
            (pl.col("is_won") | pl.col("is_lost"))
            & pl.col("from_stage_id").is_not_null()
            & (pl.col("entry_direction") != "reopen")
            & (pl.col("entered_at") >= window_start)
            & (pl.col("entered_at") < cutoff_at)
        )
        .group_by("business_line", pl.col("entered_at").dt.truncate("1mo").alias("month"))
        .agg(n=pl.len(), won=pl.col("is_won").sum())
        .filter((pl.col("won") > 0) & (pl.col("won") < pl.col("n")))
        .sort("business_line", "month")
        .with_columns(rate=pl.col("won") / pl.col("n"))
        .with_columns(
            log_odds=(pl.col("rate") / (1 - pl.col("rate"))).log(),
            sampling_variance=1.0 / (pl.col("n") * pl.col("rate") * (1 - pl.col("rate"))),
        )
        .group_by("business_line")
        .agg(
            months=pl.len(),
            log_odds=pl.col("log_odds"),
            sampling_variance=pl.col("sampling_variance"),
        )
        .filter(pl.col("months") >= 3)
        .sort("business_line")
        .collect(engine=LEARNING_ENGINE)
    )
    if monthly.height == 0:
        return 0.0
    # numpy over sorted lists: the same sums in the same order on every run.
    weights = monthly.get_column("months").to_numpy() - 1.0
    excess = np.array(
        [
            np.var(np.sort(np.asarray(x)), ddof=1) - np.mean(np.sort(np.asarray(v)))
            for x, v in zip(
                monthly.get_column("log_odds"), monthly.get_column("sampling_variance"), strict=True
            )
        ]
    )
    return float(np.sqrt(max(float((excess * weights).sum() / weights.sum()), 0.0)))


def _new_lead_rates(
    entries: pl.LazyFrame,
    stage_win: pl.DataFrame,
    inflow_start: datetime,
    window_start: datetime,
    cutoff_at: datetime,
    settings: ForecastSettings,
) -> pl.LazyFrame:
    """One row per line x segment: entries per day lately and P(win) of a new entry.

    P(win | entry) = sum over entry stages of the segment's entry share (shrunk toward the line's, as
    the chain rows are) x P(win | stage)."""
    k = settings.segment_prior_strength
    window_entries = entries.filter(pl.col("entered_at") >= window_start)
    by_segment = window_entries.group_by("business_line", "segment", "stage_id").agg(n=pl.len())
    by_line = (
        window_entries.group_by("business_line", "stage_id")
        .agg(n_line=pl.len())
        .with_columns(line_share=pl.col("n_line") / pl.col("n_line").sum().over("business_line"))
    )
    segment_win = stage_win.lazy().filter(pl.col("segment") != TOTAL)
    entry_win = (
        by_segment.select("business_line", "segment")
        .unique()
        .join(by_line, on="business_line", how="inner")
        .join(by_segment, on=["business_line", "segment", "stage_id"], how="left")
        .with_columns(pl.col("n").fill_null(0))
        .sort("business_line", "segment", "stage_id")
        .with_columns(
            share=(pl.col("n") + k * pl.col("line_share"))
            / (pl.col("n").sum().over("business_line", "segment") + k)
        )
        .join(segment_win, on=["business_line", "segment", "stage_id"], how="inner")
        .sort("business_line", "segment", "stage_id")
        .group_by("business_line", "segment")
        .agg(
            entry_win_probability=exact_sum(pl.col("share") * pl.col("win_probability"), PROBABILITY_SCALE)
            / exact_sum(pl.col("share"), PROBABILITY_SCALE)
        )
    )
    inflow = (
        entries.filter(pl.col("entered_at") >= inflow_start)
        .group_by("business_line", "segment")
        .agg(recent_entries=pl.len())
    )
    return (
        entry_win.join(inflow, on=["business_line", "segment"], how="left")
        .with_columns(pl.col("recent_entries").fill_null(0))
        .with_columns(daily_inflow=pl.col("recent_entries") / settings.inflow_window_days)
        .sort("business_line", "segment")
    )


def score_open_deals(
    open_deals: pl.LazyFrame, model: FunnelModel, settings: ForecastSettings
) -> pl.LazyFrame:
    """Open deals with P(win | stage, line, segment, age in stage) and the amount the forecast uses."""
    medians = (
        model.age.lazy()
        .filter(pl.col("age_bucket") == 0)
        .select("business_line", "stage_id", "median_stay_days")
    )
    bucket = pl.sum_horizontal(
        *[
            (pl.col("days_in_stage") >= edge * pl.col("median_stay_days")).cast(pl.Int64)
            for edge in settings.age_bucket_edges
        ]
    )
    average_won = _average_won_size(model.won_sizes.lazy())
    return (
        open_deals.join(
            model.stage_win.lazy().select(
                "business_line",
                "segment",
                "stage_id",
                pl.col("win_probability").alias("stage_win_probability"),
            ),
            on=["business_line", "segment", "stage_id"],
            how="left",
        )
        .join(medians, on=["business_line", "stage_id"], how="left")
        .with_columns(age_bucket=pl.when(pl.col("median_stay_days").is_not_null()).then(bucket).otherwise(0))
        .join(
            model.age.lazy().select("business_line", "stage_id", "age_bucket", "age_factor"),
            on=["business_line", "stage_id", "age_bucket"],
            how="left",
        )
        .join(average_won, on=["business_line", "segment"], how="left")
        .with_columns(
            # A stage unknown to the chain (no catalogue row) keeps the CRM probability.
            stage_win_probability=pl.col("stage_win_probability")
            .fill_null(pl.col("crm_probability"))
            .fill_null(0.0),
            age_factor=pl.col("age_factor").fill_null(1.0),
            is_amount_imputed=pl.col("amount_reporting").is_null(),
            forecast_amount=pl.col("amount_reporting").fill_null(pl.col("average_won_amount")).fill_null(0.0),
        )
        .with_columns(
            win_probability=(pl.col("stage_win_probability") * pl.col("age_factor")).clip(0.0, 1.0),
            naive_weighted_amount=pl.col("forecast_amount") * pl.col("crm_probability").fill_null(0.0),
        )
        .sort("deal_id")
    )


def _average_won_size(won_sizes: pl.LazyFrame) -> pl.LazyFrame:
    """Average won deal size per line x segment, the line's where the segment won nothing."""
    won_sizes = won_sizes.sort(pl.all())
    by_segment = won_sizes.group_by("business_line", "segment").agg(
        segment_average=exact_sum(pl.col("amount_reporting"), MONEY_SCALE) / pl.len()
    )
    by_line = won_sizes.group_by("business_line").agg(
        line_average=exact_sum(pl.col("amount_reporting"), MONEY_SCALE) / pl.len()
    )
    overall = won_sizes.select(overall_average=exact_sum(pl.col("amount_reporting"), MONEY_SCALE) / pl.len())
    lines = won_sizes.select("business_line").unique()
    return (
        lines.join(won_sizes.select("segment").unique(), how="cross")
        .join(by_segment, on=["business_line", "segment"], how="left")
        .join(by_line, on="business_line", how="left")
        .join(overall, how="cross")
        .select(
            "business_line",
            "segment",
            average_won_amount=pl.coalesce("segment_average", "line_average", "overall_average"),
        )
    )


def month_edges(cutoff_at: datetime, months: int) -> tuple[list[date], np.ndarray]:
    """Starts of the `months` calendar months from the cutoff's, and their edges in days from the
    cutoff (the first month starts at the cutoff: what is before it is already known)."""
    first = date(cutoff_at.year, cutoff_at.month, 1)
    starts = [_add_months(first, i) for i in range(months + 1)]
    edges = np.array(
        [
            max((datetime.combine(s, datetime.min.time()) - cutoff_at).total_seconds() / 86_400, 0.0)
            for s in starts
        ]
    )
    return starts[:-1], edges


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def forecast_periods(cutoff_at: datetime, horizon_quarters: int) -> tuple[list[Period], np.ndarray]:
    """The months and quarters from the cutoff's quarter through `horizon_quarters` quarters."""
    first_month = date(cutoff_at.year, cutoff_at.month, 1)
    quarter_start = date(first_month.year, 3 * ((first_month.month - 1) // 3) + 1, 1)
    end = _add_months(quarter_start, 3 * horizon_quarters)
    months = (end.year - first_month.year) * 12 + end.month - first_month.month
    starts, edges = month_edges(cutoff_at, months)
    periods = [Period("month", s, _add_months(s, 1) - timedelta(days=1), (i,)) for i, s in enumerate(starts)]
    for q in range(horizon_quarters):
        q_start = _add_months(quarter_start, 3 * q)
        indexes = tuple(i for i, s in enumerate(starts) if q_start <= s < _add_months(q_start, 3))
        periods.append(Period("quarter", q_start, _add_months(q_start, 3) - timedelta(days=1), indexes))
    return periods, edges


def _group_codes(frame: pl.DataFrame, keys: list[str], pool: pl.DataFrame) -> np.ndarray:
    """Code of each row's group in `pool` (-1 where the pool lacks it)."""
    codes = pool.select(keys).unique(maintain_order=True).with_row_index("group_code")
    return (
        frame.select(keys)
        .with_row_index("_row")
        .join(codes, on=keys, how="left")
        .sort("_row")
        .get_column("group_code")
        .cast(pl.Int64)
        .fill_null(-1)
        .to_numpy()
    )


def _sorted_pool(pool: pl.DataFrame, keys: list[str], sort_by: str, values: str) -> tuple[np.ndarray, ...]:
    """Pool rows ordered by group then `sort_by`: (group code, sort value, drawn value)."""
    codes = pool.select(keys).unique(maintain_order=True).with_row_index("group_code")
    ordered = pool.join(codes, on=keys, how="left").sort("group_code", sort_by, values)
    return (
        ordered.get_column("group_code").cast(pl.Int64).to_numpy(),
        ordered.get_column(sort_by).to_numpy().astype(float),
        ordered.get_column(values).to_numpy().astype(float),
    )


@dataclass(frozen=True)
class TimingPlan:
    """Which timing pool each open deal draws from, and the slice of that pool (no draws yet)."""

    pools: list[tuple[np.ndarray, bool, bool]]
    """(days to won, conditional on age, in segment time scale) per pool."""
    pool_of: np.ndarray
    chosen_lo: np.ndarray
    chosen_hi: np.ndarray
    level: np.ndarray
    age: np.ndarray
    scale: np.ndarray


def timing_plan(deals: pl.DataFrame, timing: pl.DataFrame, min_samples: int) -> TimingPlan:
    """The pool and pool slice each deal's days to the win are drawn from.

    Levels: 0 = line x segment x stage among stays at least as old; 1 = line x stage among stays at
    least as old, every stay and age measured in its segment's time scale (`_with_time_scales`), so
    slow and fast segments are not mixed as they are; 2 = the same pool at any age (the draw taken as
    time from now); 3 = no history (30 days)."""
    n = deals.height
    chosen_lo = np.zeros(n, dtype=np.int64)
    chosen_hi = np.zeros(n, dtype=np.int64)
    level = np.full(n, 3)
    pool_of = np.full(n, -1)
    pools = []
    age = deals.get_column("days_in_stage").to_numpy().astype(float)
    # The deal's own segment time scale (1 where its segment left no won deal through the stage).
    scale = np.ones(n)
    if timing.height:
        scales = timing.select("business_line", "segment", "stage_id", "time_scale").unique()
        scale = (
            deals.select("business_line", "segment", "stage_id")
            .with_row_index("_row")
            .join(scales, on=["business_line", "segment", "stage_id"], how="left")
            .sort("_row")
            .get_column("time_scale")
            .fill_null(1.0)
            .to_numpy()
        )
    for index, (keys, conditional, stay_column, value_column) in enumerate(
        [
            (["business_line", "segment", "stage_id"], True, "stay_days", "days_to_won"),
            (["business_line", "stage_id"], True, "scaled_stay_days", "scaled_days_to_won"),
            (["business_line", "stage_id"], False, "scaled_stay_days", "scaled_days_to_won"),
        ]
    ):
        if timing.height == 0:
            break
        scaled = index > 0
        group, stay, to_won = _sorted_pool(timing, keys, stay_column, value_column)
        pools.append((to_won, conditional, scaled))
        code = _group_codes(deals, keys, timing)
        known = code >= 0
        lo = np.searchsorted(group, code, side="left")
        hi = np.searchsorted(group, code, side="right")
        if conditional:
            # The pool is sorted by (group, stay): skip the group's stays shorter than the deal's age.
            composite = group * _GROUP_STRIDE + stay
            deal_age = age / scale if scaled else age
            lo = np.searchsorted(composite, code * _GROUP_STRIDE + deal_age, side="left")
        enough = known & (hi - lo >= (min_samples if index < 2 else 1)) & (level == 3)
        chosen_lo[enough], chosen_hi[enough] = lo[enough], hi[enough]
        level[enough], pool_of[enough] = index, len(pools) - 1
    return TimingPlan(pools, pool_of, chosen_lo, chosen_hi, level, age, scale)


def month_index(edges: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Month of each day count, as `np.searchsorted(edges, days, side="right") - 1` (-1 before the
    first edge, len(edges) - 1 from the last on), by one comparison per edge: far faster than a binary
    search per value for the few edges of a horizon (fewer than 32,767)."""
    month = np.full(days.shape, -1, dtype=np.int16)
    for edge in edges:
        month += days >= edge
    return month


def row_percentiles(values: np.ndarray, percents: tuple[float, ...]) -> np.ndarray:
    """`np.percentile(values, percents, axis=1).T` (linear method), to the last bit, from one sort of
    each row: numpy's vectorised sort is about twice as fast as the selection np.percentile runs for
    three percentiles. Sorts `values` in place."""
    n = values.shape[1]
    at = (n - 1) * (np.asarray(percents, dtype=float) / 100)
    below = np.floor(at).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    weight = at - below
    values.sort(axis=1)
    low, high = values[:, below], values[:, above]
    step = high - low
    out = low + step * weight
    # numpy interpolates from the upper neighbour past the midpoint.
    upper = weight >= 0.5
    out[:, upper] = (high - step * (1 - weight))[:, upper]
    return out


def remaining_days(plan: TimingPlan, start: int, stop: int, u: np.ndarray) -> np.ndarray:
    """Days from the cutoff to the win of deals [start, stop), one per uniform draw in `u` (their rows),
    if the deal wins."""
    remaining = np.full(u.shape, 30.0)
    pool_of = plan.pool_of[start:stop]
    for p, (to_won, conditional, scaled) in enumerate(plan.pools):
        rows = np.flatnonzero(pool_of == p)
        if rows.size == 0:
            continue
        lo, hi = plan.chosen_lo[start + rows, None], plan.chosen_hi[start + rows, None]
        # The draw's position in its pool slice, computed in place: lo + floor(u x (hi - lo)).
        position = u[rows] if rows.size < pool_of.size else u.copy()
        position *= hi - lo
        np.floor(position, out=position)
        index = position.astype(np.int64)
        del position
        index += lo
        picked = to_won[index]
        del index
        if scaled:
            picked *= plan.scale[start + rows, None]
        if conditional:
            picked -= plan.age[start + rows, None]
            np.maximum(picked, 0.0, out=picked)
        remaining[rows] = picked
    return remaining


def _new_lead_intensity(
    new_leads: pl.DataFrame, cycles: pl.DataFrame, edges: np.ndarray, min_samples: int
) -> np.ndarray:
    """Expected new won deals per line x segment row x month from leads created after the cutoff.

    A lead created on day t (day midpoints from the cutoff) is won in month m with probability
    P(win | entry) x P(cycle in [edge_m - t, edge_m+1 - t)); the inflow rate sums that over days."""
    rows = new_leads.height
    intensity = np.zeros((rows, len(edges) - 1))
    if rows == 0 or cycles.height == 0:
        return intensity
    days = np.arange(0.5, edges[-1], 1.0)
    for r, (line, segment, rate, win) in enumerate(
        new_leads.select("business_line", "segment", "daily_inflow", "entry_win_probability").iter_rows()
    ):
        sample = cycles.filter((pl.col("business_line") == line) & (pl.col("segment") == segment))
        if sample.height < min_samples:
            sample = cycles.filter(pl.col("business_line") == line)
        if sample.height == 0:
            continue
        cycle = np.sort(sample.get_column("days_to_won").to_numpy())
        # P(cycle <= edge - t) for every edge and creation day, then differences per month.
        below = np.searchsorted(cycle, edges[:, None] - days[None, :], side="right") / cycle.size
        intensity[r] = rate * win * np.diff(below, axis=0).sum(axis=1)
    return intensity


def _won_size_draws(new_leads: pl.DataFrame, won_sizes: pl.DataFrame, min_samples: int) -> list[np.ndarray]:
    """Per line x segment row, the won deal sizes a new won deal is drawn from (the line's if few)."""
    out = []
    for line, segment in new_leads.select("business_line", "segment").iter_rows():
        sample = won_sizes.filter((pl.col("business_line") == line) & (pl.col("segment") == segment))
        if sample.height < min_samples:
            sample = won_sizes.filter(pl.col("business_line") == line)
        if sample.height == 0:
            sample = won_sizes
        out.append(sample.get_column("amount_reporting").to_numpy().astype(float))
    return out


@dataclass(frozen=True)
class Simulation:
    """Draws and expectations per line x segment group and month."""

    groups: pl.DataFrame
    """business_line, segment; row i is group i."""
    open_draws: np.ndarray
    """(simulations, groups, months) won revenue from open deals."""
    new_draws: np.ndarray
    """(simulations, groups, months) won revenue from leads not yet created."""
    open_expected: np.ndarray
    """(groups, months) expected won revenue from open deals."""
    new_expected: np.ndarray
    """(groups, months) expected won revenue from new leads."""
    deal_month_probability: np.ndarray
    """(deals, months) P(the deal is won in the month)."""
    remaining_day_percentiles: np.ndarray
    """(deals, 3) P10, P50, P90 of the days from the cutoff to the win, if won (zeros when not asked)."""
    timing_level: np.ndarray


SIMULATION_CHUNK_CELLS = 1 << 18
"""Deals x simulations simulated at once: the (deals, simulations) arrays of one chunk take about 2 MB
each, whatever the number of open deals (small enough to stay in cache: 2 MB chunks ran about a fifth
faster than 8 MB ones on 50,000 deals x 2,000 simulations)."""


def _stream_at(state: dict, offset: int) -> np.random.Generator:
    """A Generator positioned `offset` 64-bit outputs after `state` (a PCG64 state): the uniforms a
    single `random((n, s))` call would have drawn from row `offset / s` on. One double is one output."""
    bit_generator = np.random.PCG64()
    bit_generator.state = state
    bit_generator.advance(offset)
    return np.random.Generator(bit_generator)


def simulate(
    scored: pl.DataFrame,
    model: FunnelModel,
    edges: np.ndarray,
    seed: int,
    settings: ForecastSettings,
    chunk_cells: int = SIMULATION_CHUNK_CELLS,
    deal_percentiles: bool = True,
) -> Simulation:
    """Expected and simulated won revenue per line x segment x month (months bounded by `edges`).

    The open deals are simulated in chunks of about `chunk_cells` deals x simulations, so memory does not
    grow with the number of open deals. The random stream is the one of drawing everything at once
    (every deal's timing uniforms, the market shocks, every deal's win uniforms, then the new leads):
    each chunk reads its own rows of those blocks by advancing the PCG64 stream, and the sums are
    accumulated deal by deal in the same order, so the figures do not depend on the chunk size.
    `deal_percentiles=False` skips each deal's close-day percentiles (the backtest does not show them)."""
    rng = np.random.default_rng(seed)
    s = settings.simulations
    groups = (
        pl.concat(
            [scored.select("business_line", "segment"), model.new_leads.select("business_line", "segment")]
        )
        .unique()
        .sort("business_line", "segment")
    )
    n_groups, n_months = groups.height, len(edges) - 1
    deal_group = _group_codes(scored, ["business_line", "segment"], groups)
    plan = timing_plan(scored, model.timing, settings.min_timing_samples)
    p = scored.get_column("win_probability").to_numpy().astype(float)
    amount = scored.get_column("forecast_amount").to_numpy().astype(float)
    n = scored.height

    # Stream layout: n x s timing uniforms, s shocks, n x s win uniforms, then the new leads' draws.
    timing_state = rng.bit_generator.state
    rng.bit_generator.advance(n * s)
    shock = rng.normal(0.0, model.win_odds_sigma, s)
    win_state = rng.bit_generator.state
    rng.bit_generator.advance(n * s)

    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    # exp(-(log-odds + shock)) as a product of per-deal and per-simulation factors: no exp per draw.
    odds_against = (1 - clipped) / clipped
    shock_factor = np.exp(-shock)
    certain = ~((p > 0) & (p < 1))
    month_share = np.zeros((n, n_months))
    day_percentiles = np.zeros((n, 3))
    open_flat = np.zeros(s * n_groups * n_months)
    step = max(1, chunk_cells // max(s, 1))
    # One set of (chunk, simulations) buffers, reused: the last chunk uses their first rows.
    uniforms = np.empty((min(step, n), s))
    chance = np.empty((min(step, n), s))
    for start in range(0, n, step):
        stop = min(start + step, n)
        rows = stop - start
        u = uniforms[:rows]
        _stream_at(timing_state, start * s).random(out=u)
        remaining = remaining_days(plan, start, stop, u)
        month = month_index(edges, remaining)
        if deal_percentiles:
            day_percentiles[start:stop] = row_percentiles(remaining, (10, 50, 90))
        del remaining
        # Outside the horizon: month n_months, a column of its own that is dropped.
        month[month < 0] = n_months
        # Share of the deal's draws won in each month, from exact counts per deal.
        cell = month + (np.arange(rows, dtype=np.int64) * (n_months + 1))[:, None]
        counts = np.bincount(cell.ravel(), minlength=rows * (n_months + 1)).reshape(rows, n_months + 1)
        month_share[start:stop] = counts[:, :n_months] / s
        del cell, counts
        # P(win) of each deal in each simulation: logistic of its log-odds plus the simulation's shock.
        c = chance[:rows]
        np.multiply(odds_against[start:stop, None], shock_factor[None, :], out=c)
        np.add(c, 1.0, out=c)
        np.divide(1.0, c, out=c)
        sure = np.flatnonzero(certain[start:stop])
        c[sure] = p[start + sure, None]
        _stream_at(win_state, start * s).random(out=u)
        won = u < c
        won &= month < n_months
        hit = np.flatnonzero(won)
        del won
        deal_idx = hit // s
        flat = ((hit - deal_idx * s) * n_groups + deal_group[start + deal_idx]) * n_months + month.ravel()[
            hit
        ]
        # Added hit by hit in (deal, simulation) order, as one bincount over all deals would.
        np.add.at(open_flat, flat, amount[start + deal_idx])
    open_draws = open_flat.reshape(s, n_groups, n_months)
    deal_month_probability = p[:, None] * month_share
    open_expected = np.zeros((n_groups, n_months))
    np.add.at(open_expected, deal_group, deal_month_probability * amount[:, None])

    # Row i must stay group i: the intensities below are indexed like the groups.
    new_leads = (
        groups.join(model.new_leads, on=["business_line", "segment"], how="left")
        .sort("business_line", "segment")
        .with_columns(
            pl.col("daily_inflow").fill_null(0.0),
            pl.col("recent_entries").fill_null(0),
            pl.col("entry_win_probability").fill_null(0.0),
        )
    )
    intensity = _new_lead_intensity(new_leads, model.cycles, edges, settings.min_timing_samples)
    sizes = _won_size_draws(new_leads, model.won_sizes, settings.min_timing_samples)
    mean_size = np.array([x.mean() if x.size else 0.0 for x in sizes])
    new_expected = intensity * mean_size[:, None]
    # The inflow rate is itself an estimate: draw it from its Gamma posterior (recent entries + 1/2).
    entries = new_leads.get_column("recent_entries").to_numpy().astype(float)
    rate_factor = rng.gamma(entries + 0.5, 1.0 / np.maximum(entries, 0.5), size=(s, n_groups))
    # New leads share the market shock: their win odds move with the open deals'.
    counts = rng.poisson(intensity[None, :, :] * (rate_factor * np.exp(shock)[:, None])[:, :, None])
    new_draws = np.zeros((s, n_groups, n_months))
    for g, pool in enumerate(sizes):
        total = counts[:, g, :].sum()
        if total == 0 or pool.size == 0:
            continue
        values = pool[rng.integers(0, pool.size, total)]
        cell = np.repeat(np.arange(s * n_months), counts[:, g, :].ravel())
        new_draws[:, g, :] = np.bincount(cell, weights=values, minlength=s * n_months).reshape(s, n_months)
    return Simulation(
        groups=groups,
        open_draws=open_draws,
        new_draws=new_draws,
        open_expected=open_expected,
        new_expected=new_expected,
        deal_month_probability=deal_month_probability,
        remaining_day_percentiles=day_percentiles,
        timing_level=plan.level,
    )


def naive_by_month(
    scored: pl.DataFrame, groups: pl.DataFrame, cutoff_at: datetime, edges: np.ndarray
) -> np.ndarray:
    """(groups, months) weighted pipeline placed by expected close date; overdue dates in month 0."""
    n_months = len(edges) - 1
    out = np.zeros((groups.height, n_months))
    if scored.height == 0:
        return out
    group = _group_codes(scored, ["business_line", "segment"], groups)
    close_days = (
        scored.select(
            (
                (
                    pl.col("expected_close_date").cast(pl.Datetime("us")) - pl.lit(cutoff_at)
                ).dt.total_microseconds()
                * DAYS_PER_US
            ).fill_null(0.0)
        )
        .to_series()
        .to_numpy()
    )
    month = np.clip(np.searchsorted(edges, close_days, side="right") - 1, 0, None)
    keep = month < n_months
    np.add.at(out, (group[keep], month[keep]), scored.get_column("naive_weighted_amount").to_numpy()[keep])
    return out


def seed_for(cutoff_at: datetime) -> int:
    """The simulation seed of a cutoff: its date as YYYYMMDD, so a re-run draws the same numbers."""
    return int(cutoff_at.strftime("%Y%m%d"))


def period_rollups(
    groups: pl.DataFrame,
    periods: list[Period],
    open_draws: np.ndarray,
    new_draws: np.ndarray,
    open_expected: np.ndarray,
    new_expected: np.ndarray,
    naive: np.ndarray,
    won_to_date: np.ndarray,
    calibration: Mapping[int, float] | None = None,
) -> pl.DataFrame:
    """Per period x (line x segment, line total 'all', grand total 'all'): expected, P10/P50/P90, naive.

    Percentiles of a total are taken over the summed draws, never summed from the parts. The range of
    what is still to be won is widened by `calibration` (extra log-variance per backtest horizon, see
    `transforms.forecast_calibration`): months by the 1-month one, quarters by the 3-month one."""
    lines = groups.get_column("business_line").to_list()
    segments = groups.get_column("segment").to_list()
    rollups: list[tuple[str, str, np.ndarray]] = [
        (line, segment, np.array([i])) for i, (line, segment) in enumerate(zip(lines, segments, strict=True))
    ]
    for line in sorted(set(lines)):
        rollups.append((line, TOTAL, np.array([i for i, x in enumerate(lines) if x == line])))
    rollups.append((TOTAL, TOTAL, np.arange(len(lines))))
    records = []
    for period in periods:
        m = list(period.month_indexes)
        open_g = open_draws[:, :, m].sum(axis=2)
        new_g = new_draws[:, :, m].sum(axis=2)
        for line, segment, g in rollups:
            draws = open_g[:, g].sum(axis=1) + new_g[:, g].sum(axis=1)
            known = float(won_to_date[g][:, m].sum())
            p10, p50, p90 = np.percentile(draws, [10, 50, 90]) if draws.size else (0.0, 0.0, 0.0)
            expected_open = float(open_expected[g][:, m].sum())
            expected_new = float(new_expected[g][:, m].sum())
            records.append(
                {
                    "period_type": period.period_type,
                    "period_start": period.period_start,
                    "period_end": period.period_end,
                    "business_line": line,
                    "segment": segment,
                    "won_to_date_revenue": known,
                    "expected_open_pipeline_revenue": expected_open,
                    "expected_new_lead_revenue": expected_new,
                    "expected_revenue": known + expected_open + expected_new,
                    "revenue_p10": float(p10),
                    "revenue_p50": float(p50),
                    "revenue_p90": float(p90),
                    "naive_weighted_pipeline": float(naive[g][:, m].sum()),
                    "calibration_log_variance": log_variance_for(calibration or {}, period.period_type),
                }
            )
    frame = pl.DataFrame(records)
    if frame.height == 0:
        return frame
    p10, p90 = widened(
        pl.col("revenue_p10"),
        pl.col("revenue_p50"),
        pl.col("revenue_p90"),
        pl.col("calibration_log_variance"),
    )
    known = pl.col("won_to_date_revenue")
    return frame.with_columns(
        revenue_p10=known + p10,
        revenue_p50=known + pl.col("revenue_p50"),
        revenue_p90=known + p90,
        calibration_log_sd=pl.col("calibration_log_variance").sqrt(),
    ).drop("calibration_log_variance")


def won_revenue_by_month(
    spells: pl.LazyFrame, groups: pl.DataFrame, month_starts: list[date], cutoff_at: datetime
) -> np.ndarray:
    """(groups, months) revenue won in each month before the cutoff (the part of a period already known)."""
    out = np.zeros((groups.height, len(month_starts)))
    if not month_starts:
        return out
    start = datetime.combine(month_starts[0], datetime.min.time())
    won = won_deals(spells, start, cutoff_at).collect()
    if won.height == 0:
        return out
    group = _group_codes(won, ["business_line", "segment"], groups)
    month_index = np.array(
        [(w.year - start.year) * 12 + w.month - start.month for w in won.get_column("won_at").to_list()]
    )
    keep = group >= 0
    amounts = won.get_column("amount_reporting").fill_null(0.0).to_numpy()
    np.add.at(out, (group[keep], month_index[keep]), amounts[keep])
    return out


def cutoff_for(as_of_date: date) -> datetime:
    """The end of the as-of day: events on the as-of date are known, later ones are not."""
    return datetime.combine(as_of_date + timedelta(days=1), datetime.min.time())


def forecast_as_of(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    as_of_date: date,
    horizon_quarters: int = 2,
    settings: ForecastSettings | None = None,
    calibration: Mapping[int, float] | None = None,
    history: Tables | None = None,
) -> ForecastResult:
    """The live forecast: the funnel at the end of `as_of_date`, the months and quarters from its
    quarter through `horizon_quarters` quarters, and the per-deal table.

    `spells` is `funnel_spells(...)`; only its rows before the cutoff are read. `calibration`: the
    extra log-variance per backtest horizon in months (`forecast_calibration.calibration_at` over the
    backtest table), {} or None for the range as simulated. `history`: every spell, bound as
    `{forecast_spells}`, when `spells` holds only the deals of `window_deals_sql` (`learn_funnel_model`):
    the same forecast without reading the whole history into memory."""
    settings = settings or ForecastSettings()
    cutoff_at = cutoff_for(as_of_date)
    known = spells_known_at(spells, cutoff_at)
    model = learn_funnel_model(known, stages, cutoff_at, settings, history)
    scored = score_open_deals(open_deals_at(known, cutoff_at), model, settings).collect()
    periods, edges = forecast_periods(cutoff_at, horizon_quarters)
    sim = simulate(scored, model, edges, seed_for(cutoff_at), settings)
    naive = naive_by_month(scored, sim.groups, cutoff_at, edges)
    month_starts = [p.period_start for p in periods if p.period_type == "month"]
    won_to_date = won_revenue_by_month(known, sim.groups, month_starts, cutoff_at)
    period_frame = period_rollups(
        sim.groups,
        periods,
        sim.open_draws,
        sim.new_draws,
        sim.open_expected,
        sim.new_expected,
        naive,
        won_to_date,
        calibration,
    )
    open_counts = scored.group_by("business_line", "segment").agg(open_deal_count=pl.len())
    inflow = model.new_leads.select("business_line", "segment", "daily_inflow")
    period_frame = (
        period_frame.join(open_counts, on=["business_line", "segment"], how="left")
        .join(inflow, on=["business_line", "segment"], how="left")
        .with_columns(
            open_deal_count=pl.when(pl.col("segment") == TOTAL)
            .then(None)
            .otherwise(pl.col("open_deal_count").fill_null(0))
        )
    )
    period_frame = _fill_total_counts(period_frame).select(pl.lit(as_of_date).alias("as_of_date"), pl.all())
    deals = _deal_table(scored, sim, periods, cutoff_at).select(
        pl.lit(as_of_date).alias("as_of_date"),
        pl.lit(next(p for p in periods if p.period_type == "quarter").period_start).alias(
            "current_quarter_start"
        ),
        pl.all(),
    )
    return ForecastResult(periods=period_frame, deals=deals)


def _fill_total_counts(frame: pl.DataFrame) -> pl.DataFrame:
    """Open deal counts and inflow of the 'all' rows: sums of their parts within each period."""
    parts = frame.filter(pl.col("segment") != TOTAL).sort(
        "period_type", "period_start", "business_line", "segment"
    )
    line_totals = parts.group_by("period_type", "period_start", "business_line").agg(
        line_count=pl.col("open_deal_count").sum(),
        line_inflow=exact_sum(pl.col("daily_inflow"), PROBABILITY_SCALE),
    )
    grand = parts.group_by("period_type", "period_start").agg(
        grand_count=pl.col("open_deal_count").sum(),
        grand_inflow=exact_sum(pl.col("daily_inflow"), PROBABILITY_SCALE),
    )
    return (
        frame.join(line_totals, on=["period_type", "period_start", "business_line"], how="left")
        .join(grand, on=["period_type", "period_start"], how="left")
        .with_columns(
            open_deal_count=pl.when(pl.col("business_line") == TOTAL)
            .then(pl.col("grand_count"))
            .when(pl.col("segment") == TOTAL)
            .then(pl.col("line_count"))
            .otherwise(pl.col("open_deal_count"))
            .cast(pl.Int64),
            new_lead_daily_inflow=pl.when(pl.col("business_line") == TOTAL)
            .then(pl.col("grand_inflow"))
            .when(pl.col("segment") == TOTAL)
            .then(pl.col("line_inflow"))
            .otherwise(pl.col("daily_inflow"))
            .fill_null(0.0),
        )
        .drop("line_count", "line_inflow", "grand_count", "grand_inflow", "daily_inflow")
        .sort("period_type", "period_start", "business_line", "segment")
    )


TIMING_BASIS = ("line_segment_stage_age", "line_stage_age", "line_stage", "no_history")


def _deal_table(
    scored: pl.DataFrame, sim: Simulation, periods: list[Period], cutoff_at: datetime
) -> pl.DataFrame:
    """Per open deal: P(win), the close-date distribution if won, and its share of the current month
    and quarter."""
    q10, q50, q90 = sim.remaining_day_percentiles.T
    current_quarter = next(p for p in periods if p.period_type == "quarter")
    month_p = sim.deal_month_probability
    cutoff = pl.lit(cutoff_at)
    return (
        scored.rename({"expected_close_date": "crm_expected_close_date"})
        .with_columns(
            median_days_to_win=pl.Series(q50, dtype=pl.Float64),
            p10_days=pl.Series(q10, dtype=pl.Float64),
            p90_days=pl.Series(q90, dtype=pl.Float64),
            probability_won_current_month=pl.Series(
                month_p[:, 0] if month_p.shape[1] else [], dtype=pl.Float64
            ),
            probability_won_current_quarter=pl.Series(
                month_p[:, list(current_quarter.month_indexes)].sum(axis=1), dtype=pl.Float64
            ),
            timing_basis=pl.Series([TIMING_BASIS[i] for i in sim.timing_level], dtype=pl.String),
        )
        .with_columns(
            expected_won_amount=pl.col("win_probability") * pl.col("forecast_amount"),
            expected_revenue_current_quarter=pl.col("probability_won_current_quarter")
            * pl.col("forecast_amount"),
            expected_close_date=(
                cutoff + pl.duration(microseconds=pl.col("median_days_to_win") * DAY_US)
            ).dt.date(),
            close_date_p10=(cutoff + pl.duration(microseconds=pl.col("p10_days") * DAY_US)).dt.date(),
            close_date_p90=(cutoff + pl.duration(microseconds=pl.col("p90_days") * DAY_US)).dt.date(),
        )
        .select(
            "deal_id",
            "business_line",
            "segment",
            "stage_id",
            "stage_order",
            pl.col("entered_at").alias("stage_entered_at"),
            "days_in_stage",
            "age_bucket",
            pl.col("amount_reporting").alias("deal_amount_reporting"),
            "is_amount_imputed",
            "forecast_amount",
            "crm_probability",
            "naive_weighted_amount",
            "crm_expected_close_date",
            "stage_win_probability",
            "age_factor",
            "win_probability",
            "expected_won_amount",
            "median_days_to_win",
            "expected_close_date",
            "close_date_p10",
            "close_date_p90",
            "probability_won_current_month",
            "probability_won_current_quarter",
            "expected_revenue_current_quarter",
            "timing_basis",
        )
    )
