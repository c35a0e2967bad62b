"""P(win | stage) from an absorbing Markov chain over a pipeline's stages, learned from transitions.

Each business line is one pipeline. Its open (non-terminal) stages are the transient states, won and
lost the absorbing ones. Row i of the chain is the share of exits from stage i that went to each stage
(or to won / lost), counted over the transitions of the training window. With the transient block Q and
the absorbing block R, B = (I - Q)^-1 R holds P(absorbed in won | start in stage i); it is solved with
`numpy.linalg.solve`, never by inverting.

Small segments are noisy: a segment's row is a Dirichlet-style blend of its own counts and its line's
row, (n_seg_ij + k * p_line_ij) / (n_seg_i + k), so a row with few exits sits near the line and a row
with many exits speaks for itself (k = `prior_strength`, in pseudo-exits). A stage the line never left
in the window falls back to the catalogue's CRM probability (won with p, lost with 1 - p).

A reopen (from lost back to an open stage) is not a transition of the chain: lost is absorbing, and a
reopened deal re-enters the open pipeline as a new open deal.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from transforms.exact import exact_sum, exact_units_sql
from transforms.sql import Tables, frame_tables, timestamp_literal

WON, LOST = "won", "lost"
PROBABILITY_SCALE = 1e12


def transitions_known_at(spells: pl.LazyFrame, cutoff_at, window_start_at) -> pl.LazyFrame:
    """One row per stage change out of an open stage in [window_start_at, cutoff_at): the chain's data.

    `spells` carries business_line, segment, from_stage_id, stage_id, is_won, is_lost, entered_at,
    entry_direction, from_entered_at and from_stage_days (the completed stay in the from-stage).
    """
    return (
        spells.filter(
            pl.col("from_stage_id").is_not_null()
            & (pl.col("entry_direction") != "reopen")
            & (pl.col("entered_at") < cutoff_at)
            & (pl.col("entered_at") >= window_start_at)
        )
        .with_columns(
            to_state=pl.when(pl.col("is_won"))
            .then(pl.lit(WON))
            .when(pl.col("is_lost"))
            .then(pl.lit(LOST))
            .otherwise(pl.col("stage_id"))
        )
        .select(
            "business_line",
            "segment",
            "from_stage_id",
            "to_state",
            "from_stage_days",
            pl.col("from_entered_at").alias("stay_start_at"),
        )
    )


def _row_probabilities(
    counts: np.ndarray, fallback: np.ndarray, prior: np.ndarray | None, prior_strength: float
) -> np.ndarray:
    """Transition rows: counts shrunk toward `prior` (the line), or the fallback row where no exits."""
    totals = counts.sum(axis=1, keepdims=True)
    if prior is None:
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.where(totals > 0, counts / totals, fallback)
        return rows
    return (counts + prior_strength * prior) / (totals + prior_strength)


def absorption_win_probability(transition_matrix: np.ndarray) -> np.ndarray:
    """P(won) from each transient state; columns of the matrix: transient states, then won, then lost.

    B = (I - Q)^-1 R, solved as the linear system (I - Q) B = R.
    """
    n = transition_matrix.shape[0]
    q = transition_matrix[:, :n]
    r = transition_matrix[:, n:]
    system = np.eye(n) - q
    try:
        absorbed = np.linalg.solve(system, r)
    except np.linalg.LinAlgError:
        # A closed loop of open stages that never exits makes I - Q singular; the least-squares
        # solution gives those states no absorption mass, i.e. P(won) = 0, which is what they show.
        absorbed = np.linalg.lstsq(system, r, rcond=None)[0]
    return np.clip(absorbed[:, 0], 0.0, 1.0)


def stage_win_probabilities(
    transitions: pl.DataFrame, stages: pl.DataFrame, segments: list[str], prior_strength: float
) -> pl.DataFrame:
    """One row per business line x segment (and 'all' = the line) x open stage: P(won | stage).

    `stages`: pipeline_id, stage_id, stage_order, is_terminal, win_probability (CRM, 0-1).
    Columns: business_line, segment, stage_id, stage_order, exits_observed, win_probability.
    """
    rows = []
    for line in sorted(stages.get_column("pipeline_id").unique().to_list()):
        open_stages = stages.filter((pl.col("pipeline_id") == line) & ~pl.col("is_terminal")).sort(
            "stage_order"
        )
        stage_ids = open_stages.get_column("stage_id").to_list()
        n = len(stage_ids)
        if n == 0:
            continue
        column_of = {s: i for i, s in enumerate(stage_ids)} | {WON: n, LOST: n + 1}
        crm = open_stages.get_column("win_probability").fill_null(0.0).clip(0.0, 1.0).to_numpy()
        fallback = np.zeros((n, n + 2))
        fallback[:, n] = crm
        fallback[:, n + 1] = 1.0 - crm
        line_transitions = transitions.filter(
            (pl.col("business_line") == line)
            & pl.col("from_stage_id").is_in(stage_ids)
            & pl.col("to_state").is_in(list(column_of))
        )
        counts = {segment: np.zeros((n, n + 2)) for segment in segments}
        grouped = line_transitions.group_by("segment", "from_stage_id", "to_state").len()
        for segment, from_stage, to_state, count in grouped.iter_rows():
            counts.setdefault(segment, np.zeros((n, n + 2)))
            counts[segment][column_of[from_stage], column_of[to_state]] += count
        line_counts = sum(counts.values(), np.zeros((n, n + 2)))
        line_rows = _row_probabilities(line_counts, fallback, None, prior_strength)
        line_win = absorption_win_probability(line_rows)
        for segment, segment_counts in [("all", line_counts), *sorted(counts.items())]:
            if segment == "all":
                win = line_win
            else:
                win = absorption_win_probability(
                    _row_probabilities(segment_counts, fallback, line_rows, prior_strength)
                )
            rows.extend(
                {
                    "business_line": line,
                    "segment": segment,
                    "stage_id": stage_id,
                    "stage_order": int(order),
                    "exits_observed": int(segment_counts[i].sum()),
                    "win_probability": float(win[i]),
                }
                for i, (stage_id, order) in enumerate(
                    zip(stage_ids, open_stages.get_column("stage_order"), strict=True)
                )
            )
    return pl.DataFrame(
        rows,
        schema={
            "business_line": pl.String,
            "segment": pl.String,
            "stage_id": pl.String,
            "stage_order": pl.Int64,
            "exits_observed": pl.Int64,
            "win_probability": pl.Float64,
        },
    )


AGE_SPELL_COLUMNS = [
    "business_line",
    "segment",
    "from_stage_id",
    "stage_id",
    "is_won",
    "is_lost",
    "is_terminal",
    "entered_at",
    "exited_at",
    "entry_direction",
    "from_entered_at",
    "from_stage_days",
    "crm_closed_at",
]
"""What the age factors read of `{forecast_spells}` (the columns of `transforms.forecast.funnel_spells`)."""


def _age_stays_sql(cutoff: str) -> str:
    """Every stay in an open stage known at the cutoff, over the whole history of `{forecast_spells}`:
    finished ones (a change out of an open stage, as `transitions_known_at`, with the stay's days and its
    next state), and those still going at the cutoff (as `open_deals_at`: not terminal, the CRM record
    not closed before it; stay_days and to_state null)."""
    return f"""
        select business_line, from_stage_id, from_entered_at as stay_start_at, from_stage_days as stay_days,
            case when is_won then '{WON}' when is_lost then '{LOST}' else stage_id end as to_state
        from {{forecast_spells}}
        where from_stage_id is not null and entry_direction != 'reopen' and entered_at < {cutoff}
        union all
        select business_line, stage_id, entered_at, null, null
        from {{forecast_spells}}
        where entered_at < {cutoff} and (exited_at is null or exited_at >= {cutoff}) and not is_terminal
            and (crm_closed_at is null or crm_closed_at >= {cutoff})
    """


def age_factors_from_tables(
    t: Tables,
    line_win: pl.LazyFrame,
    cutoff_at: datetime,
    bucket_edges: tuple[float, ...],
    follow_up_days: float,
    prior_strength: float,
) -> pl.DataFrame:
    """One row per business line x open stage x age bucket: how age in stage scales P(won).

    A deal's age bucket is its days in stage over the stage's median completed stay (edges in multiples
    of that median, the first bucket from 0). For bucket b starting at age A_b, take every stay that
    reached A_b at least `follow_up_days` before the cutoff (still-open stays included: they are the
    deals that stall). Its outcome is P(won | next state) when it left the stage within the follow-up
    (won = 1, lost = 0, an open stage its line's absorption probability), else 0: a deal still stuck
    after the follow-up does not close in any forecast horizon. P_b is the mean outcome per line x stage.
    Relative age makes stages comparable, so the factor pools them: the mean of P_b / P_0 over every
    line and stage (weighted by stays), shrunk toward 1 (no age effect) with `prior_strength`
    pseudo-stays; bucket 0 is 1 by construction.

    The stays are the whole known history (how stalling deals end is slow to observe): `{forecast_spells}`
    (AGE_SPELL_COLUMNS) bound in `t`, all of them or those known at the cutoff. DuckDB counts every stay
    into its buckets (at SF100, 40M spells: a frame of every stay x bucket did not fit in memory), and
    only the buckets' counts and exact outcome sums come back. The median is Polars' (the mean of the two
    middle values as lower + (upper - lower) / 2), and the sums are integers, so the figures are the
    same on every run and over frames or the warehouse.
    `line_win`: business_line, stage_id, win_probability (the line's chain).
    Columns: business_line, stage_id, age_bucket, bucket_start_days, median_stay_days, stays_in_bucket
    (all lines and stages), age_factor.
    """
    edges = pl.DataFrame(
        {"age_bucket": list(range(len(bucket_edges) + 1)), "edge": [0.0, *bucket_edges]},
        schema={"age_bucket": pl.Int64, "edge": pl.Float64},
    )
    next_win = pl.concat(
        [
            line_win.select("business_line", pl.col("stage_id").alias("to_state"), "win_probability"),
            pl.LazyFrame({"to_state": [WON, LOST], "win_probability": [1.0, 0.0]}),
        ],
        how="diagonal",
    ).rename({"win_probability": "next_win_probability"})
    t.add("age_edges", edges)
    t.add("next_win", next_win)
    cutoff = timestamp_literal(cutoff_at)
    t.materialize("age_stays", _age_stays_sql(cutoff))
    t.materialize(
        "age_medians",
        """
        select business_line, from_stage_id, lower_middle + (upper_middle - lower_middle) * 0.5
            as median_stay_days
        from (
            select business_line, from_stage_id, quantile_disc(stay_days, 0.5) as lower_middle,
                -quantile_disc(-stay_days, 0.5) as upper_middle
            from {age_stays}
            where stay_days is not null
            group by business_line, from_stage_id
        )
        """,
    )
    # A won or lost next state has the same probability on every line (the rows without a line).
    follow_up = f"cast({float(follow_up_days)!r} as double)"
    outcome = f"case when stay_days <= bucket_start_days + {follow_up} then next_win else 0.0::double end"
    latest_reached = timestamp_literal(cutoff_at - timedelta(days=follow_up_days))
    bucket_outcomes = t.frame(
        f"""
        with reached as (
            select stays.business_line, stays.from_stage_id, edges.age_bucket,
                edges.edge * medians.median_stay_days as bucket_start_days, medians.median_stay_days,
                stays.stay_days, stays.stay_start_at,
                coalesce(line_next.next_win_probability, closed_next.next_win_probability, 0.0::double)
                    as next_win
            from {{age_stays}} as stays
            inner join {{age_medians}} as medians
                on stays.business_line = medians.business_line
                and stays.from_stage_id = medians.from_stage_id
            left join {{next_win}} as line_next
                on stays.business_line = line_next.business_line and stays.to_state = line_next.to_state
            left join (select * from {{next_win}} where business_line is null) as closed_next
                on stays.to_state = closed_next.to_state
            cross join {{age_edges}} as edges
        )
        select business_line, from_stage_id, age_bucket, any_value(bucket_start_days) as bucket_start_days,
            any_value(median_stay_days) as median_stay_days, count(*) as stays_in_bucket,
            {exact_units_sql(outcome, PROBABILITY_SCALE)} as outcome_units
        from reached
        where (stay_days is null or stay_days >= bucket_start_days)
            and stay_start_at + to_microseconds(cast(trunc(bucket_start_days * 86400000000) as bigint))
                <= {latest_reached}
        group by business_line, from_stage_id, age_bucket
        """
    ).with_columns(
        bucket_win_probability=pl.col("outcome_units").cast(pl.Int128)
        / PROBABILITY_SCALE
        / pl.col("stays_in_bucket")
    )
    medians = t.frame("select * from {age_medians}").lazy()
    bucket_outcomes = bucket_outcomes.lazy()
    base = bucket_outcomes.filter(pl.col("age_bucket") == 0).select(
        "business_line", "from_stage_id", pl.col("bucket_win_probability").alias("base_win_probability")
    )
    # Pooled over lines and stages: the stalling deals that drive the factor are few in any one stage.
    pooled = (
        bucket_outcomes.join(base, on=["business_line", "from_stage_id"], how="inner")
        .filter(pl.col("base_win_probability") > 0)
        .sort("business_line", "from_stage_id", "age_bucket")
        .group_by("age_bucket")
        .agg(
            stays_in_bucket=pl.col("stays_in_bucket").sum(),
            raw_factor=exact_sum(
                pl.col("bucket_win_probability") / pl.col("base_win_probability") * pl.col("stays_in_bucket"),
                PROBABILITY_SCALE,
            )
            / pl.col("stays_in_bucket").sum(),
        )
        .with_columns(
            age_factor=(pl.col("stays_in_bucket") * pl.col("raw_factor") + prior_strength)
            / (pl.col("stays_in_bucket") + prior_strength)
        )
    )
    return (
        medians.join(edges.lazy(), how="cross")
        .join(pooled, on="age_bucket", how="left")
        .select(
            "business_line",
            pl.col("from_stage_id").alias("stage_id"),
            "age_bucket",
            (pl.col("edge") * pl.col("median_stay_days")).alias("bucket_start_days"),
            "median_stay_days",
            pl.col("stays_in_bucket").fill_null(0),
            pl.col("age_factor").fill_null(1.0),
        )
        .collect()
    )


def age_factors(
    spells: pl.LazyFrame,
    line_win: pl.LazyFrame,
    cutoff_at: datetime,
    bucket_edges: tuple[float, ...],
    follow_up_days: float,
    prior_strength: float,
) -> pl.DataFrame:
    """`age_factors_from_tables` over a frame of spells (`transforms.forecast.funnel_spells`, all of them or
    those known at the cutoff)."""
    with frame_tables({"forecast_spells": spells.select(AGE_SPELL_COLUMNS)}) as t:
        return age_factors_from_tables(t, line_win, cutoff_at, bucket_edges, follow_up_days, prior_strength)
