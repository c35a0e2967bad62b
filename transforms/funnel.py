"""Funnel conversion and cohorts, from the stage-event log (`marts.fct_stage_transitions`).

Definitions (see `docs/funnel.md` for the reasons):

- **Stages shown.** Per business line: the pipeline's current open stages in order, then won. Lost is
  terminal and never a funnel row. For the all-lines total (`business_line = '(all)'`) only stages that
  every pipeline has at the same position are comparable: those, plus won.
- **Reached (any-stage, the default).** A deal reached stage k when it entered k or any later non-lost
  stage (a retired stage included); `reached_at` is the first such entry. **Strict**: it entered every
  current stage up to k, first entries in stage order; `reached_strict_at` is its first entry into k.
- **Advanced / dropped / pending.** Of the deals that reached k, *advanced* reached the next shown
  stage by the as-of date; *dropped* did not and are lost now; *pending* did not and are still open.
  Step conversion = advanced / (advanced + dropped): open deals are neither success nor failure yet,
  so a young period is not read as a bad one.
- **Conversion to won** C_k = product of the step conversions from k to the last open stage, and
  **cumulative conversion** (share of stage-1 deals reaching k) = product of the steps before k. Both
  chain the steps of the same period, so C_k never falls and the cumulative share never rises down the
  funnel, and the reverse funnel (leads x C_1 x average won deal = target) is exact.
- Counts are additive over periods: each deal's first reach of a stage falls in exactly one period.
- **Time in stage**: completed spells, by the period they ended in (one spell = one stay; a deal that
  came back to a stage has two). **Stage fill / SLA breaches**: open spells at the end of the period's
  last day (or of the as-of day for the running period); a spell breaches when its age in whole days
  exceeds the stage's SLA, as in `dim_deals.is_sla_breached`.
- **Deal figures** (win rates, average won deal, sales cycle, velocity) are per period x line x segment
  and repeated on every stage row of that group: do not sum them over stages.
- **Status** comes from the deal's last stage event on or before the as-of date, so the figures of a
  past as-of date are rebuilt from the events before it.

Where it runs: the deal-level work (events, outcomes, reach per deal x stage, spells, their counts,
quantiles and sums per period) is DuckDB SQL over the deal sources (`transforms.sql`: the warehouse's
relations in the assets, literal frames in tests), so only aggregates come to Polars, which builds the
grid, the chained conversions and the ratios. Sums of floats run in another order than before, so
figures may differ in the last bits (compare with a tolerance, never bit for bit).
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from transforms.exact import exact_avg_sql, exact_sum, exact_sum_sql
from transforms.sql import Tables, end_of_day_literal, frame_tables

ALL = "(all)"
AMOUNT_SCALE = 1e4
"""Sums of deal amounts are exact to 1/10,000 (`transforms.exact`): the amounts are DECIMAL(18,4) in
`dim_deals`, so their sums are those of the source's digits, the same on every run."""
DAY_SCALE = 1e12
"""Sums of days are exact to 1e-12 day (`transforms.exact`)."""
SHARE_SCALE = 1e15
"""Sums of shares and probabilities (at most 1 each) are exact to 1e-15."""
"""Label of the total rows (all business lines, all segments)."""
UNKNOWN_SEGMENT = "unknown"
GRAINS = ("month", "quarter")
_TRUNCATE = {"month": "1mo", "quarter": "1q"}
_DAY_SECONDS = 86_400.0


def _days(duration: pl.Expr) -> pl.Expr:
    return duration.dt.total_seconds(fractional=True) / _DAY_SECONDS


def _end_of_day(day: date) -> pl.Expr:
    return pl.lit(day + timedelta(days=1)).cast(pl.Datetime("us"))


def _ratio(numerator: str | pl.Expr, denominator: str | pl.Expr) -> pl.Expr:
    num = pl.col(numerator) if isinstance(numerator, str) else numerator
    den = pl.col(denominator) if isinstance(denominator, str) else denominator
    return pl.when(den > 0).then(num / den).otherwise(None)


# --------------------------------------------------------------------------------------------- inputs

DEAL_SOURCES = ("transitions", "dim_deals", "dim_clients")
"""The large inputs, read by SQL (`transforms.sql.Tables`): marts.fct_stage_transitions, dim_deals,
dim_clients. Stages and targets are small Polars frames."""


def funnel_stages(stages: pl.LazyFrame) -> pl.LazyFrame:
    """One row per shown stage per view: `view_business_line` is the pipeline, or '(all)' for the stages
    shared by every pipeline at the same position plus won. `next_stage_order` is the pipeline order of
    the next shown stage (null on won)."""
    current = stages.filter(~pl.col("is_deleted") & ~pl.col("is_lost")).select(
        "pipeline_id", "stage_id", "stage_name", "stage_order", "is_won", "sla_days"
    )
    own = current.with_columns(view_business_line=pl.col("pipeline_id"))
    pipeline_count = current.select(pl.col("pipeline_id").n_unique().alias("pipeline_count"))
    shared_keys = (
        current.filter(~pl.col("is_won"))
        .group_by("stage_id", "stage_order")
        .agg(pl.len().alias("pipelines_with_stage"))
        .join(pipeline_count, how="cross")
        .filter(pl.col("pipelines_with_stage") == pl.col("pipeline_count"))
        .select("stage_id", "stage_order")
    )
    shared = pl.concat(
        [current.join(shared_keys, on=["stage_id", "stage_order"]), current.filter(pl.col("is_won"))]
    ).with_columns(view_business_line=pl.lit(ALL))
    return (
        pl.concat([own, shared])
        .sort("view_business_line", "pipeline_id", "stage_order")
        .with_columns(
            stage_number=pl.col("stage_order").rank("ordinal").over("view_business_line", "pipeline_id"),
            next_stage_order=pl.col("stage_order")
            .shift(-1)
            .over("view_business_line", "pipeline_id", order_by="stage_order"),
        )
        .with_columns(pl.col("stage_number").cast(pl.Int64))
    )


# SQL over the deal sources. `{end}` is midnight after the as-of date: events on or before it count.

_MICROSECONDS_TO_DAYS = "/ 1000000 / 86400"


def days_sql(later: str, earlier: str) -> str:
    """Days between two timestamps, fractional, as `_days` computes them (microseconds / 1e6 / 86400)."""
    return f"(cast(date_diff('microsecond', {earlier}, {later}) as double) {_MICROSECONDS_TO_DAYS})"


EVENTS_SQL = """
    select deal_id, from_stage_id, from_stage_days, to_stage_id, to_stage_order, changed_at,
        transition_number, is_to_won, is_to_lost
    from {transitions}
    where changed_at < {end}
"""

DEALS_SQL = f"""
    select deals.deal_id, deals.business_line, coalesce(clients.segment, '{UNKNOWN_SEGMENT}') as segment,
        deals.created_at, cast(deals.amount_reporting as double) as amount_reporting
    from {{dim_deals}} as deals
    left join (select client_id, segment from {{dim_clients}}) as clients
        on deals.client_id = clients.client_id
"""
"""One row per deal: business line, client segment ('unknown' without a client), creation, amount."""

# One row per deal with stage history: status from its last event on or before the as-of date.
OUTCOMES_SQL = """
    select deals.deal_id, deals.business_line, deals.segment, deals.created_at, deals.amount_reporting,
        last_events.entered_funnel_at,
        case when last_events.last_is_won then 'won' when last_events.last_is_lost then 'lost'
            else 'open' end as status,
        case when last_events.last_is_won then last_events.last_at end as won_at,
        case when last_events.last_is_lost then last_events.last_at end as lost_at
    from ({deals_sql}) as deals
    inner join (
        select deal_id, min(changed_at) as entered_funnel_at, max(changed_at) as last_at,
            -- transition_number orders a deal's events by (changed_at, event_id), and the events
            -- kept (up to the as-of date) are a prefix of them: the last is the highest number.
            arg_max_null(is_to_won, transition_number) as last_is_won,
            arg_max_null(is_to_lost, transition_number) as last_is_lost
        from {events}
        group by deal_id
    ) as last_events on deals.deal_id = last_events.deal_id
"""


def _deal_reach_sql(shown: pl.DataFrame) -> str:
    """One row per deal with history: its furthest entered order, for every shown stage order o the
    earliest entry into a stage of order >= o (`from_order_<o>`: any-stage reach), and for every own
    stage number j the first entry into it if the first entries into stages 1..j were in stage order
    (`strict_<j>`: strict reach). Entries into lost are not reaches."""
    orders = sorted(int(o) for o in shown["stage_order"].drop_nulls().unique())
    own_numbers = range(1, int(shown["own_stage_number"].max() or 0) + 1)
    from_order = "".join(
        f",\n min(events.changed_at) filter (where events.to_stage_order >= {o}) as from_order_{o}"
        for o in orders
    )
    own_entry = "".join(
        f",\n min(events.changed_at) filter (where own.own_stage_number = {j}) as own_entry_{j}"
        for j in own_numbers
    )
    strict = "".join(
        ",\n case when own_entry_1 is not null"
        + "".join(f" and own_entry_{i} >= own_entry_{i - 1}" for i in range(2, j + 1))
        + f" then own_entry_{j} end as strict_{j}"
        for j in own_numbers
    )
    return f"""
        select deal_id, furthest_order{"".join(f", from_order_{o}" for o in orders)}{strict}
        from (
            select events.deal_id, max(events.to_stage_order) as furthest_order{from_order}{own_entry}
            from {{events}} as events
            inner join {{outcomes}} as outcomes on events.deal_id = outcomes.deal_id
            left join {{shown}} as own
                on own.view_business_line = own.pipeline_id
                and outcomes.business_line = own.pipeline_id
                and events.to_stage_id = own.stage_id
            where not events.is_to_lost
            group by events.deal_id
        )
    """


def reach_sql(shown: pl.DataFrame) -> str:
    """One row per deal x view x shown stage of its pipeline that the deal reached: when (any-stage and
    strict), whether it advanced to the next shown stage, dropped out (lost) or is pending (open).
    Reads `{outcomes}`, `{shown}` and `{deal_reach}` (`materialize_deal_facts`)."""
    orders = sorted(int(o) for o in shown["stage_order"].drop_nulls().unique())
    own_numbers = range(1, int(shown["own_stage_number"].max() or 0) + 1)

    def pick(column: str, prefix: str, values: list[int] | range) -> str:
        whens = " ".join(f"when {v} then deal_reach.{prefix}_{v}" for v in values)
        return f"case shown.{column} {whens} end" if whens else "cast(null as timestamp)"

    return f"""
        select deal_id, business_line, view_business_line, segment, stage_id, stage_number, reached_at,
            reached_strict_at, has_advanced,
            not has_advanced and status = 'lost' as is_dropped,
            not has_advanced and status = 'open' as is_pending,
            status = 'won' as is_eventually_won,
            amount_reporting, status, won_at
        from (
            select outcomes.deal_id, outcomes.business_line, shown.view_business_line, outcomes.segment,
                shown.stage_id, shown.stage_number,
                {pick("stage_order", "from_order", orders)} as reached_at,
                {pick("own_stage_number", "strict", own_numbers)} as reached_strict_at,
                case when shown.next_stage_order is not null
                    then deal_reach.furthest_order >= shown.next_stage_order end as has_advanced,
                outcomes.amount_reporting, outcomes.status, outcomes.won_at
            from {{outcomes}} as outcomes
            inner join {{shown}} as shown on outcomes.business_line = shown.pipeline_id
            left join {{deal_reach}} as deal_reach on outcomes.deal_id = deal_reach.deal_id
        )
        where reached_at is not null or reached_strict_at is not null
    """


def shown_stages(stages: pl.LazyFrame) -> pl.DataFrame:
    """`funnel_stages` with `own_stage_number`: the stage's number in its own pipeline's view (strict
    reach is judged there, for the all-lines view too)."""
    shown = funnel_stages(stages)
    own = shown.filter(pl.col("view_business_line") == pl.col("pipeline_id")).select(
        "pipeline_id", "stage_id", own_stage_number="stage_number"
    )
    return shown.join(own, on=["pipeline_id", "stage_id"], how="left").collect()


DEAL_FACTS = ("outcomes", "deal_reach")
"""The deal facts several marts share (`materialize_deal_facts`), which a run can store once."""


def materialize_deal_facts(
    t: Tables, as_of: date, stages: pl.LazyFrame | None = None, store_in: str | None = None
) -> str:
    """`{events}` (stage changes on or before the as-of date, read where used) and the temporary table
    `{outcomes}` (one row per deal with history: line, segment, amount, first entry, status, close
    time); with `stages`, also `{shown}` (`shown_stages`) and `{deal_reach}`, and returns the SQL of
    the deal x view x stage reach (`reach_sql`, bound) for queries to read from; without, ''.

    With `store_in` (a schema), `{outcomes}` and `{deal_reach}` are written as tables `<schema>.outcomes`
    and `<schema>.deal_reach`, replaced, for other marts to be given as sources (not in a transaction
    of their own: the caller commits them with whatever says what they were built for). When the
    caller already bound `{outcomes}` and `{deal_reach}` to such tables, for the same as-of date and
    stage catalogue (the caller's to vouch for), they are read, not computed again."""
    stored = {name: f"{store_in}.{name}" if store_in else None for name in DEAL_FACTS}
    t.define("events", EVENTS_SQL, end=end_of_day_literal(as_of))
    if not t.binds("outcomes"):
        t.materialize("outcomes", OUTCOMES_SQL, into=stored["outcomes"], deals_sql=t.text(DEALS_SQL))
    if stages is None:
        return ""
    shown = shown_stages(stages)
    t.add("shown", shown)
    if not t.binds("deal_reach"):
        t.materialize("deal_reach", _deal_reach_sql(shown), into=stored["deal_reach"])
    return t.text(reach_sql(shown))


def line_segment_pairs(t: Tables) -> pl.DataFrame:
    """Every business line x segment of dim_deals (with or without stage history)."""
    return t.frame(f"select distinct business_line, segment from ({DEALS_SQL})")


# ------------------------------------------------------------------------------------------- periods

_PERIOD_GRAINS_SQL = "(select * from (values ('month'), ('quarter')) as grains (period_grain))"


def _period_start_sql(at: str) -> str:
    return (
        f"cast(case period_grain when 'month' then date_trunc('month', {at}) "
        f"else date_trunc('quarter', {at}) end as date)"
    )


def _totals_sql(keys: list[str], lines: bool) -> tuple[str, str]:
    """Select labels and GROUP BY clause for the rows plus their totals: the segment total ('(all)'),
    and with `lines` also the business-line totals."""
    line = "case when grouping(line) = 1 then '(all)' else line end as business_line"
    segment = "case when grouping(seg) = 1 then '(all)' else seg end as segment"
    base = ", ".join(keys)
    if lines:
        sets = [f"({base}, line, seg)", f"({base}, line)", f"({base}, seg)", f"({base})"]
    else:
        sets = [f"({base}, line, seg)", f"({base}, line)"]
    return f"{line}, {segment}", f"group by grouping sets ({', '.join(sets)})"


def period_calendar(first_at: pl.LazyFrame, as_of: date) -> pl.LazyFrame:
    """One row per month and quarter from the first event's to the as-of date's: grain, period start and
    end, and the day whose end the fill is measured at (the period end, or the as-of date)."""
    frames = []
    for grain in GRAINS:
        frames.append(
            first_at.select(
                period_start=pl.date_ranges(
                    pl.col("first_at").dt.date().dt.truncate(_TRUNCATE[grain]),
                    pl.lit(as_of),
                    _TRUNCATE[grain],
                )
            )
            .explode("period_start")
            .with_columns(period_grain=pl.lit(grain))
        )
    return (
        pl.concat(frames)
        .with_columns(
            period_end=pl.when(pl.col("period_grain") == "month")
            .then(pl.col("period_start").dt.month_end())
            .otherwise(pl.col("period_start").dt.offset_by("3mo").dt.offset_by("-1d"))
        )
        .with_columns(fill_date=pl.min_horizontal("period_end", pl.lit(as_of)))
        .select("period_grain", "period_start", "period_end", "fill_date")
    )


def line_segment_universe(deals: pl.LazyFrame, targets: pl.LazyFrame | None = None) -> pl.LazyFrame:
    """Every business line x segment that has a deal or a target, with the totals: the rows every output
    must show, so a segment without deals is an explicit row of zeros, not a missing one."""
    pairs = deals.select("business_line", "segment")
    if targets is not None:
        pairs = pl.concat([pairs, targets.select("business_line", "segment")])
    pairs = pairs.unique()
    with_lines = pl.concat([pairs, pairs.with_columns(business_line=pl.lit(ALL))])
    return pl.concat([with_lines, with_lines.with_columns(segment=pl.lit(ALL))]).unique()


# --------------------------------------------------------------------------------------- conversion

_GROUP = ["period_grain", "period_start", "business_line", "segment"]
_STAGE_GROUP = [*_GROUP, "stage_id"]


def _reach_counts(t: Tables, reach: str) -> pl.LazyFrame:
    """Deals reaching each stage per period of their first reach (any-stage: with advanced / dropped /
    pending / won; strict: counted in the period of the first entry into the stage)."""
    labels, group_by = _totals_sql(["period_grain", "period_start", "stage_id"], lines=False)
    any_stage = t.frame(
        f"""
        select period_grain, period_start, {labels}, stage_id,
            count(*) as reached_count,
            count(*) filter (where has_advanced) as advanced_count,
            count(*) filter (where is_dropped) as dropped_count,
            count(*) filter (where is_pending) as pending_count,
            count(*) filter (where is_eventually_won) as eventually_won_count
        from (
            select period_grain, {_period_start_sql("reached_at")} as period_start,
                view_business_line as line, segment as seg, stage_id,
                has_advanced, is_dropped, is_pending, is_eventually_won
            from ({reach}) cross join {_PERIOD_GRAINS_SQL}
            where reached_at is not null
        )
        {group_by}
        """
    )
    strict = t.frame(
        f"""
        select period_grain, period_start, {labels}, stage_id,
            count(*) as reached_strict_count
        from (
            select period_grain, {_period_start_sql("reached_strict_at")} as period_start,
                view_business_line as line, segment as seg, stage_id
            from ({reach}) cross join {_PERIOD_GRAINS_SQL}
            where reached_strict_at is not null
        )
        {group_by}
        """
    )
    return any_stage.lazy().join(strict.lazy(), on=_STAGE_GROUP, how="full", coalesce=True)


def _time_in_stage(t: Tables) -> pl.LazyFrame:
    """Completed spells by the period they ended in: count, median, P80 and mean days.

    Exact quantiles keep every value of a group in memory (DuckDB cannot spill them), so each period
    grain and each level of totals is its own query, and one `quantile_cont` gives both the median and
    the P80: one copy of the days at a time instead of eight (at SF100 the single query ran out of
    DuckDB's 2 GB)."""
    levels = {
        "line, seg": "line as business_line, seg as segment",
        "line": f"line as business_line, '{ALL}' as segment",
    }
    frames = [
        t.frame(
            f"""
            select period_grain, period_start, {labels}, stage_id,
                count(*) as completed_spell_count,
                quantile_cont(from_stage_days, [0.5, 0.8]) as quantiles,
                {exact_avg_sql("from_stage_days", DAY_SCALE)} as time_in_stage_mean_days
            from (
                select '{grain}' as period_grain,
                    cast(date_trunc('{grain}', events.changed_at) as date) as period_start,
                    shown.view_business_line as line, outcomes.segment as seg,
                    events.from_stage_id as stage_id, events.from_stage_days
                from {{events}} as events
                inner join {{outcomes}} as outcomes on events.deal_id = outcomes.deal_id
                inner join {{shown}} as shown
                    on outcomes.business_line = shown.pipeline_id and events.from_stage_id = shown.stage_id
                where events.from_stage_id is not null and events.from_stage_days is not null
            )
            group by period_grain, period_start, stage_id, {level}
            """
        )
        for grain in GRAINS
        for level, labels in levels.items()
    ]
    return (
        pl.concat(frames)
        .lazy()
        .select(
            "period_grain",
            "period_start",
            "business_line",
            "segment",
            "stage_id",
            "completed_spell_count",
            time_in_stage_median_days=pl.col("quantiles").list.get(0),
            time_in_stage_p80_days=pl.col("quantiles").list.get(1),
            time_in_stage_mean_days="time_in_stage_mean_days",
        )
    )


OPEN_SPELLS_SQL = """
    select deal_id, stage_id, entered_at, exited_at
    from (
        select deal_id, to_stage_id as stage_id, changed_at as entered_at,
            lead(changed_at) over (partition by deal_id order by changed_at, transition_number)
                as exited_at,
            is_to_won, is_to_lost
        from {events}
    )
    where not is_to_won and not is_to_lost
"""
"""Stays in an open stage: deal, stage, entered and exited (null while open)."""


def _stage_fill(t: Tables, calendar: pl.LazyFrame) -> pl.LazyFrame:
    """Open spells at the end of each period's fill day, and those past the stage's SLA."""
    t.add(
        "fill_ends",
        calendar.select(
            "period_grain",
            "period_start",
            "fill_date",
            fill_until_at=pl.col("fill_date").dt.offset_by("1d").cast(pl.Datetime("us")),
        ).collect(),
    )
    labels, group_by = _totals_sql(["period_grain", "period_start", "stage_id"], lines=False)
    return t.frame(
        f"""
        select period_grain, period_start, {labels}, stage_id,
            count(*) as open_deal_count,
            {exact_sum_sql("amount_reporting", AMOUNT_SCALE)} as open_amount_reporting,
            count(*) filter (
                where date_diff('day', cast(entered_at as date), fill_date) > sla_days
            ) as sla_breach_count
        from (
            select ends.period_grain, ends.period_start, ends.fill_date, spells.entered_at,
                shown.view_business_line as line, outcomes.segment as seg, spells.stage_id,
                outcomes.amount_reporting, shown.sla_days
            from (
                -- Each spell with the start of every period from the one it entered in to the one it
                -- left in (or the last): those it can be open at the end of. An equi-join on them
                -- then, not a range join of every spell with every period end.
                select spells.*, grains.period_grain,
                    cast(unnest(generate_series(
                        date_trunc(grains.period_grain, spells.entered_at),
                        date_trunc(grains.period_grain, least(coalesce(spells.exited_at, last.at), last.at)),
                        grains.step
                    )) as date) as period_start
                from ({OPEN_SPELLS_SQL}) as spells
                cross join (values ('month', interval 1 month), ('quarter', interval 3 month))
                    as grains (period_grain, step)
                cross join (select cast(max(fill_date) as timestamp) as at from {{fill_ends}}) as last
            ) as spells
            inner join {{outcomes}} as outcomes on spells.deal_id = outcomes.deal_id
            inner join {{shown}} as shown
                on outcomes.business_line = shown.pipeline_id and spells.stage_id = shown.stage_id
            -- Open at the end of the fill day: entered before midnight and not yet left.
            inner join {{fill_ends}} as ends
                on spells.period_grain = ends.period_grain and spells.period_start = ends.period_start
                and spells.entered_at < ends.fill_until_at
                and coalesce(spells.exited_at, TIMESTAMP '9999-12-31') >= ends.fill_until_at
        )
        {group_by}
        """
    ).lazy()


def _deal_figures(t: Tables) -> pl.LazyFrame:
    """Won and lost deals by the period they closed in, per line x segment with the totals."""
    labels, group_by = _totals_sql(["period_grain", "period_start"], lines=True)
    return t.frame(
        f"""
        select period_grain, period_start, {labels},
            count(*) filter (where is_won) as won_count,
            count(*) filter (where not is_won) as lost_count,
            {exact_sum_sql("amount_reporting", AMOUNT_SCALE, "is_won")} as won_amount_reporting,
            {exact_sum_sql("amount_reporting", AMOUNT_SCALE, "not is_won")} as lost_amount_reporting,
            {exact_avg_sql("amount_reporting", AMOUNT_SCALE, "is_won")} as average_won_deal_reporting,
            median(cycle_days) as sales_cycle_median_days,
            quantile_cont(cycle_days, 0.8) as sales_cycle_p80_days
        from (
            select period_grain, {_period_start_sql("coalesce(won_at, lost_at)")} as period_start,
                business_line as line, segment as seg, status = 'won' as is_won, amount_reporting,
                case when status = 'won' then {days_sql("won_at", "created_at")} end as cycle_days
            from {{outcomes}} cross join {_PERIOD_GRAINS_SQL}
            where status <> 'open'
        )
        {group_by}
        """
    ).lazy()


def _first_entry(t: Tables) -> pl.LazyFrame:
    return t.frame("select min(entered_funnel_at) as first_at from {outcomes}").lazy()


def funnel_conversion(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    stages: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
) -> pl.LazyFrame:
    """One row per period (month and quarter) x business line x segment x stage, totals included."""
    sources = {"transitions": transitions, "dim_deals": dim_deals, "dim_clients": dim_clients}
    with frame_tables(sources) as t:
        return funnel_conversion_from_tables(t, stages, targets, as_of)


def funnel_conversion_from_tables(
    t: Tables, stages: pl.LazyFrame, targets: pl.LazyFrame, as_of: date
) -> pl.LazyFrame:
    """`funnel_conversion` with the deal sources (`DEAL_SOURCES`) bound in `t`: the deal-level work runs
    in DuckDB, the grid and the chained conversions in Polars on its aggregates."""
    reach = materialize_deal_facts(t, as_of, stages)
    shown = funnel_stages(stages)
    calendar = period_calendar(_first_entry(t), as_of).collect().lazy()
    universe = line_segment_universe(line_segment_pairs(t).lazy(), targets)
    stage_rows = shown.select(
        pl.col("view_business_line").alias("business_line"),
        "stage_id",
        "stage_name",
        "stage_number",
        "is_won",
    ).unique(["business_line", "stage_id"])
    grid = (
        calendar.join(universe, how="cross")
        .join(stage_rows, on="business_line")
        .join(_reach_counts(t, reach), on=_STAGE_GROUP, how="left")
        .join(_time_in_stage(t), on=_STAGE_GROUP, how="left")
        .join(_stage_fill(t, calendar), on=_STAGE_GROUP, how="left")
        .join(_deal_figures(t), on=_GROUP, how="left")
    )
    counts = [
        "reached_count",
        "reached_strict_count",
        "advanced_count",
        "dropped_count",
        "pending_count",
        "eventually_won_count",
        "completed_spell_count",
        "won_count",
        "lost_count",
    ]
    open_stage = ~pl.col("is_won")
    return (
        grid.with_columns(pl.col(counts).fill_null(0).cast(pl.Int64))
        .with_columns(
            pl.when(open_stage).then(pl.col(c).fill_null(0)).cast(dt).alias(c)
            for c, dt in [
                ("open_deal_count", pl.Int64),
                ("open_amount_reporting", pl.Float64),
                ("sla_breach_count", pl.Int64),
            ]
        )
        .with_columns(
            pl.col("won_amount_reporting", "lost_amount_reporting").fill_null(0.0),
            advanced_count=pl.when(open_stage).then("advanced_count"),
            dropped_count=pl.when(open_stage).then("dropped_count"),
            pending_count=pl.when(open_stage).then("pending_count"),
            step_conversion=pl.when(open_stage).then(
                _ratio("advanced_count", pl.col("advanced_count") + pl.col("dropped_count"))
            ),
        )
        .with_columns(chained_conversions(_GROUP))
        .with_columns(
            win_rate_count=_ratio("won_count", pl.col("won_count") + pl.col("lost_count")),
            win_rate_amount=_ratio(
                "won_amount_reporting", pl.col("won_amount_reporting") + pl.col("lost_amount_reporting")
            ),
            open_deals_in_funnel=pl.col("open_deal_count").sum().over(_GROUP),
        )
        .with_columns(
            pipeline_velocity_reporting_per_day=_ratio(
                pl.col("open_deals_in_funnel")
                * pl.col("win_rate_count")
                * pl.col("average_won_deal_reporting"),
                "sales_cycle_median_days",
            )
        )
        .select(
            "period_grain",
            "period_start",
            "period_end",
            "business_line",
            "segment",
            "stage_number",
            "stage_id",
            "stage_name",
            "reached_count",
            "reached_strict_count",
            "advanced_count",
            "dropped_count",
            "pending_count",
            "eventually_won_count",
            "step_conversion",
            "cumulative_conversion",
            "conversion_to_won",
            "completed_spell_count",
            "time_in_stage_median_days",
            "time_in_stage_p80_days",
            "time_in_stage_mean_days",
            "open_deal_count",
            "open_amount_reporting",
            "sla_breach_count",
            "won_count",
            "lost_count",
            "won_amount_reporting",
            "lost_amount_reporting",
            "win_rate_count",
            "win_rate_amount",
            "average_won_deal_reporting",
            "sales_cycle_median_days",
            "sales_cycle_p80_days",
            "open_deals_in_funnel",
            "pipeline_velocity_reporting_per_day",
        )
        .sort("period_grain", "period_start", "business_line", "segment", "stage_number")
    )


def chained_conversions(group: list[str], step: str = "step_conversion") -> list[pl.Expr]:
    """`conversion_to_won`: product of the steps from stage k to the last open one (1 on won);
    `cumulative_conversion`: product of the steps before k (1 on the first stage). Null where a step it
    needs is unknown (no decided deal). Rows of one group are ordered by `stage_number`, won last."""
    is_last = pl.col("stage_number") == pl.col("stage_number").max().over(group)
    steps = pl.when(is_last).then(pl.lit(1.0)).otherwise(pl.col(step))
    missing = steps.is_null().cast(pl.Int32)
    known = steps.fill_null(1.0)

    def window(expr: pl.Expr) -> pl.Expr:
        return expr.over(group, order_by="stage_number")

    return [
        pl.when(window(missing.cum_sum(reverse=True)) > 0)
        .then(None)
        .otherwise(window(known.cum_prod(reverse=True)))
        .alias("conversion_to_won"),
        pl.when(window(missing.shift(1, fill_value=0).cum_sum()) > 0)
        .then(None)
        .otherwise(window(known.shift(1, fill_value=1.0).cum_prod()))
        .alias("cumulative_conversion"),
    ]


# ------------------------------------------------------------------------------------------- cohorts

_COHORT_GROUP = ["cohort_month", "business_line", "segment"]


def _cohort_deals_sql(as_of: date, maturity_days: int) -> str:
    """One row per deal with history: cohort month of funnel entry, outcome, days to close (or watched
    so far) and the cohort's horizon."""
    watched = end_of_day_literal(as_of)
    return f"""
        select business_line as line, segment as seg, cohort_month, status as outcome, amount_reporting,
            {days_sql(f"coalesce(won_at, lost_at, {watched})", "entered_funnel_at")} as time_days,
            least(
                cast({int(maturity_days)} as double),
                {days_sql(watched, "cast(cohort_month as timestamp)")}
            ) as horizon_days
        from (
            select *, cast(date_trunc('month', entered_funnel_at) as date) as cohort_month
            from {{outcomes}}
        )
    """


def _cohort_counts(t: Tables, cohort_deals: str) -> pl.LazyFrame:
    labels, group_by = _totals_sql(["cohort_month"], lines=True)
    return t.frame(
        f"""
        select cohort_month, {labels},
            count(*) as deal_count,
            count(*) filter (where outcome = 'won') as won_count,
            count(*) filter (where outcome = 'lost') as lost_count,
            count(*) filter (where outcome = 'open') as open_count,
            {exact_sum_sql("amount_reporting", AMOUNT_SCALE, "outcome = 'won'")} as won_amount_reporting
        from ({cohort_deals})
        {group_by}
        """
    ).lazy()


def _aalen_johansen(t: Tables, cohort_deals: str) -> pl.LazyFrame:
    """Cumulative incidence of won and of lost at each cohort's horizon (Aalen-Johansen: competing
    outcomes, open deals censored at the as-of date).

    DuckDB counts the deals leaving at each time and sorts them (it spills; Polars then holds one copy,
    about 0.2 GB at SF10); the running sums and products over each cohort's times are Polars'
    (`cum_sum`, `cum_prod` over the sorted rows): as three DuckDB window functions over the 3.9M times
    of SF10 they took about 6 of the 7 s of this query, here well under one."""
    labels, group_by = _totals_sql(["cohort_month", "time_days"], lines=True)
    at_time = t.frame(
        f"""
        select cohort_month, {labels}, time_days,
            cast(count(*) filter (where outcome = 'won') as integer) as won_events,
            cast(count(*) filter (where outcome = 'lost') as integer) as lost_events,
            cast(count(*) as integer) as leaving,
            any_value(horizon_days) as horizon_days
        from ({cohort_deals})
        {group_by}
        order by cohort_month, business_line, segment, time_days
        """
    )
    leaving = pl.col("leaving")
    events = pl.col("won_events") + pl.col("lost_events")
    return (
        at_time.lazy()
        .with_columns(
            at_risk=leaving.sum().over(_COHORT_GROUP) - (leaving.cum_sum() - leaving).over(_COHORT_GROUP)
        )
        .with_columns(
            survival_before=(1.0 - events / pl.col("at_risk"))
            .cum_prod()
            .shift(1, fill_value=1.0)
            .over(_COHORT_GROUP)
        )
        .filter(pl.col("time_days") <= pl.col("horizon_days"))
        .group_by(_COHORT_GROUP)
        .agg(
            won_share_estimated=exact_sum(
                pl.col("survival_before") * pl.col("won_events") / pl.col("at_risk"), SHARE_SCALE
            ),
            lost_share_estimated=exact_sum(
                pl.col("survival_before") * pl.col("lost_events") / pl.col("at_risk"), SHARE_SCALE
            ),
        )
    )


def funnel_cohorts(
    transitions: pl.LazyFrame,
    dim_deals: pl.LazyFrame,
    dim_clients: pl.LazyFrame,
    targets: pl.LazyFrame,
    as_of: date,
    maturity_days: int = 180,
) -> pl.LazyFrame:
    """One row per cohort month of funnel entry x business line x segment (totals included): deals,
    observed won / lost / open shares, maturity, and the Aalen-Johansen estimate of the shares won and
    lost within `maturity_days` of entry (or within the days the cohort's oldest deal has been watched)."""
    sources = {"transitions": transitions, "dim_deals": dim_deals, "dim_clients": dim_clients}
    with frame_tables(sources) as t:
        return funnel_cohorts_from_tables(t, targets, as_of, maturity_days)


def funnel_cohorts_from_tables(
    t: Tables, targets: pl.LazyFrame, as_of: date, maturity_days: int = 180
) -> pl.LazyFrame:
    """`funnel_cohorts` with the deal sources (`DEAL_SOURCES`) bound in `t`."""
    materialize_deal_facts(t, as_of)
    cohort_deals = _cohort_deals_sql(as_of, maturity_days)
    watched_until = _end_of_day(as_of)
    month_start = pl.col("cohort_month").cast(pl.Datetime("us"))
    month_end = pl.col("cohort_month").dt.month_end().dt.offset_by("1d").cast(pl.Datetime("us"))
    months = (
        _first_entry(t)
        .select(
            cohort_month=pl.date_ranges(pl.col("first_at").dt.date().dt.truncate("1mo"), pl.lit(as_of), "1mo")
        )
        .explode("cohort_month")
    )
    universe = line_segment_universe(line_segment_pairs(t).lazy(), targets)
    aalen_johansen = _aalen_johansen(t, cohort_deals).with_columns(
        # Sums of float products: keep rounding from stepping past 1.
        pl.col("won_share_estimated", "lost_share_estimated").clip(0.0, 1.0)
    )
    return (
        months.join(universe, how="cross")
        .join(_cohort_counts(t, cohort_deals), on=_COHORT_GROUP, how="left")
        .join(aalen_johansen, on=_COHORT_GROUP, how="left")
        .with_columns(
            pl.col("deal_count", "won_count", "lost_count", "open_count").fill_null(0).cast(pl.Int64)
        )
        .with_columns(
            pl.col("won_amount_reporting").fill_null(0.0),
            won_share_observed=_ratio("won_count", "deal_count"),
            lost_share_observed=_ratio("lost_count", "deal_count"),
            open_share=_ratio("open_count", "deal_count"),
            # Mature once the youngest possible deal (entered at the month's end) had the full horizon.
            is_mature=_days(watched_until - month_end) >= maturity_days,
            estimate_horizon_days=pl.min_horizontal(
                pl.lit(float(maturity_days)), _days(watched_until - month_start)
            )
            .floor()
            .cast(pl.Int64),
        )
        .select(
            "cohort_month",
            "business_line",
            "segment",
            "deal_count",
            "won_count",
            "lost_count",
            "open_count",
            "won_amount_reporting",
            "won_share_observed",
            "lost_share_observed",
            "open_share",
            "is_mature",
            "estimate_horizon_days",
            "won_share_estimated",
            "lost_share_estimated",
        )
        .sort("cohort_month", "business_line", "segment")
    )


# ------------------------------------------------------------------------------------------- checks


def rates_out_of_range(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Rows where a rate column is outside [0, 1] (nulls pass: an unknown rate is not a wrong one)."""
    outside = pl.any_horizontal((pl.col(c) < 0) | (pl.col(c) > 1) for c in columns)
    return frame.filter(outside)


def rising_down_the_funnel(
    frame: pl.DataFrame,
    group: list[str],
    non_increasing: tuple[str, ...] = ("cumulative_conversion",),
    non_decreasing: tuple[str, ...] = ("conversion_to_won",),
    tolerance: float = 1e-9,
) -> pl.DataFrame:
    """Rows where, from one stage to the next within a group, a share of the first stage's deals rises
    or a conversion to won falls: a funnel can only narrow."""

    def previous(column: str) -> pl.Expr:
        return pl.col(column).shift(1).over(group, order_by="stage_number")

    widening = [pl.col(c) > previous(c) + tolerance for c in non_increasing]
    widening += [pl.col(c) < previous(c) - tolerance for c in non_decreasing]
    return frame.filter(pl.any_horizontal(widening))
