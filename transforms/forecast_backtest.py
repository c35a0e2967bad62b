"""Backtest of the forecast at monthly origins: what it would have said then, against what was won.

At each origin D (the first instant of a month) the funnel is cut to the spells known before D
(`spells_known_at`), the model is learned from that cut alone, and the forecast for the next 1 and 3
calendar months is compared with the revenue actually won in them: deals whose first entry into a won
stage falls in the window, at their amount in EUR, leads created after D included (the forecast covers
them too). Nothing after D reaches the forecast: the only inputs read after the cut are the actuals.

Methods: `learned` (expected value and P10/P50/P90 of the simulation, the range widened by the errors
of the earlier origins whose window had closed: `transforms.forecast_calibration`), `naive` (weighted
pipeline of the deals open at D placed by their expected close date, an overdue date in the first
month), and `naive_unphased` (the whole weighted pipeline, what a CRM's pipeline screen shows, set
against each window). Per origin x horizon x business line (and 'all'); the summary gives per horizon x
line x method: MAPE = mean |F - A| / A over origins with A > 0, bias = mean (F - A) / A, coverage =
share of origins with P10 <= A <= P90 (learned only; calibrated and as simulated).

Amounts: with the deals' amount history (`int_deal_amounts_known`, see `amounts_known_at`) a deal is
valued at the amount the CRM showed at D; without it, at today's amount. Actuals are always valued at
today's amount: what was won.

Incremental: an origin's forecast depends only on the spells known at D (with the amounts known at D and
today's segments), the stage catalogue, the settings and this code. `origin_fingerprints_from_tables`
hashes exactly those per origin, in DuckDB where the spells are. A run reuses the forecast part of every
origin whose fingerprint matches the table's and recomputes the others (new origins, or old ones whose
inputs a corrected extract changed), reading every spell only then. Actuals, calibration and errors are
recomputed on every run: they are cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, datetime

import duckdb
import numpy as np
import polars as pl

from transforms.exact import exact_sum
from transforms.forecast import (
    MONEY_SCALE,
    SPELL_COLUMNS,
    TOTAL,
    ForecastSettings,
    FunnelModel,
    _add_months,
    learn_funnel_model,
    month_edges,
    naive_by_month,
    open_deals_at,
    score_open_deals,
    seed_for,
    simulate,
    spells_known_at,
    won_deals,
)
from transforms.forecast_calibration import calibration_by_origin, calibration_score, widened
from transforms.funnel import UNKNOWN_SEGMENT
from transforms.sql import Tables, frame_tables

HORIZONS = (1, 3)
METHODS = ("learned", "naive", "naive_unphased")
MODEL_VERSION = "2026-12-08.1"
"""Part of every origin's fingerprint: bump it when a code change moves the backtest's figures, so the
origins kept in the table are recomputed."""

FORECAST_COLUMNS = [
    "origin_date",
    "horizon_months",
    "window_end_date",
    "business_line",
    "method",
    "forecast_revenue",
    "simulated_p10",
    "forecast_p50",
    "simulated_p90",
    "open_deal_count",
    "training_transitions",
]
"""What an origin's computation produces and the table keeps per origin (with its fingerprint)."""

COLUMNS = [
    "origin_date",
    "horizon_months",
    "window_end_date",
    "business_line",
    "method",
    "forecast_revenue",
    "forecast_p10",
    "forecast_p50",
    "forecast_p90",
    "actual_won_revenue",
    "error",
    "percentage_error",
    "absolute_percentage_error",
    "is_actual_in_p10_p90",
    "simulated_p10",
    "simulated_p90",
    "is_actual_in_simulated_p10_p90",
    "calibration_log_sd",
    "calibration_scores",
    "open_deal_count",
    "training_transitions",
    "input_fingerprint",
]

_FORECAST_SCHEMA = {
    "origin_date": pl.Date,
    "horizon_months": pl.Int64,
    "window_end_date": pl.Date,
    "business_line": pl.String,
    "method": pl.String,
    "forecast_revenue": pl.Float64,
    "simulated_p10": pl.Float64,
    "forecast_p50": pl.Float64,
    "simulated_p90": pl.Float64,
    "open_deal_count": pl.Int64,
    "training_transitions": pl.Int64,
}


def backtest_origins(
    first_event_at: datetime, as_of_date: date, warmup_months: int, horizon_months: int
) -> list[datetime]:
    """Month starts from `warmup_months` after the first event to the last whose horizon has ended
    by the as-of date (so every actual is complete)."""
    first = _add_months(date(first_event_at.year, first_event_at.month, 1), warmup_months + 1)
    origins = []
    current = first
    while _add_months(current, horizon_months) <= as_of_date:
        origins.append(datetime.combine(current, datetime.min.time()))
        current = _add_months(current, 1)
    return origins


def _window_end(origin: datetime, months: int) -> datetime:
    return datetime.combine(_add_months(origin.date(), months), datetime.min.time())


def _won_by_line(spells: pl.LazyFrame, start: datetime, end: datetime) -> dict[str, float]:
    won = won_deals(spells, start, end).collect()
    totals = (
        won.sort("business_line", "deal_id")
        .group_by("business_line")
        .agg(exact_sum(pl.col("amount_reporting").fill_null(0.0), MONEY_SCALE))
    )
    out = dict(totals.iter_rows())
    out[TOTAL] = float(sum(out.values()))
    return out


AMOUNT_COLUMNS = ("deal_id", "known_from", "amount_reporting")
"""The deals' amount history (`intermediate.int_deal_amounts_known`): from `known_from` on, the CRM
showed `amount_reporting` (EUR), one row per change."""


def amounts_known_at(amounts: pl.DataFrame, at: datetime) -> pl.LazyFrame:
    """Per deal, the amount the CRM showed just before `at`: its latest row with known_from < at, else
    its first row (history loaded later than `at`, e.g. from a one-off dump: the oldest amount held)."""
    return (
        amounts.lazy()
        .filter(
            (pl.col("known_from") < at) | (pl.col("known_from") == pl.col("known_from").min().over("deal_id"))
        )
        .group_by("deal_id")
        .agg(pl.col("amount_reporting").sort_by("known_from").last().cast(pl.Float64))
    )


class AmountsAtOrigins:
    """The spells valued at the amounts known at one origin after another (`amounts_known_at`), for a
    backtest run. Most deals have one row of history and so one amount at every origin: those are
    placed once. The others' rows are prepared once with the span of instants at which each is the
    amount known (from its known_from, the first row from always, until the next row's known_from), so
    an origin needs one filter (one row per deal comes out, in deal order) and a gather to its spell
    rows, written over a copy of the amount column; the other columns stay the same buffers (no copy of
    the spells per origin)."""

    def __init__(self, spells: pl.DataFrame, amounts: pl.DataFrame) -> None:
        self.spells = spells
        amounts = amounts.select(AMOUNT_COLUMNS).with_columns(pl.col("amount_reporting").cast(pl.Float64))
        changed = amounts.group_by("deal_id").len().filter(pl.col("len") > 1).select("deal_id")
        rows = spells.select("deal_id").with_row_index("row")
        steady = amounts.join(changed, on="deal_id", how="anti").select("deal_id", "amount_reporting")
        # A deal absent from the history has no amount (the forecast imputes one).
        self.steady_amounts = rows.join(steady, on="deal_id", how="left", maintain_order="left").get_column(
            "amount_reporting"
        )
        history = _amount_rows(amounts.join(changed, on="deal_id", how="semi")).with_columns(
            deal_index=pl.col("deal_id").rle_id()
        )
        self.spans = history.select(
            "amount_reporting",
            valid_from=pl.when(~pl.col("is_first")).then(pl.col("known_from")),
            valid_until=pl.col("next_from"),
        )
        self.changed_rows = rows.join(
            history.select("deal_id", "deal_index").unique("deal_id"), on="deal_id", how="inner"
        ).select("row", "deal_index")

    def spells_at(self, at: datetime) -> pl.DataFrame:
        known = self.spans.filter(
            (pl.col("valid_from").is_null() | (pl.col("valid_from") < at)) & (pl.col("valid_until") >= at)
        ).get_column("amount_reporting")
        column = self.steady_amounts.clone().scatter(
            self.changed_rows.get_column("row"), known.gather(self.changed_rows.get_column("deal_index"))
        )
        return self.spells.with_columns(column)


def backtest_forecast_at(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    origin: datetime,
    settings: ForecastSettings,
    amounts: pl.DataFrame | AmountsAtOrigins | None = None,
) -> pl.DataFrame:
    """What the forecast said at one origin (no actuals): one row per horizon x business line (and
    'all') x method, columns FORECAST_COLUMNS; the learned range as simulated. Deals are valued at
    their amount known at the origin when `amounts` (AMOUNT_COLUMNS, or `AmountsAtOrigins` over these
    spells) is given, else at the spells'."""
    if isinstance(amounts, pl.DataFrame):
        amounts = AmountsAtOrigins(spells.collect(), amounts)
    scored, model = _learned_at(spells, stages, origin, settings, amounts)
    return _forecast_rows(origin, scored, model, settings)


def _learned_at(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    origin: datetime,
    settings: ForecastSettings,
    amounts: AmountsAtOrigins | None,
) -> tuple[pl.DataFrame, FunnelModel]:
    """The open deals scored at one origin and the model learned there (Polars)."""
    if amounts is not None:
        spells = amounts.spells_at(origin).lazy()
    known = spells_known_at(spells, origin)
    model = learn_funnel_model(known, stages, origin, settings)
    return score_open_deals(open_deals_at(known, origin), model, settings).collect(), model


def _forecast_rows(
    origin: datetime, scored: pl.DataFrame, model: FunnelModel, settings: ForecastSettings
) -> pl.DataFrame:
    """The forecast rows of one origin from its scored deals and model (the simulation: numpy)."""
    horizon = max(HORIZONS)
    _, edges = month_edges(origin, horizon)
    sim = simulate(scored, model, edges, seed_for(origin), settings, deal_percentiles=False)
    naive = naive_by_month(scored, sim.groups, origin, edges)
    lines = sim.groups.get_column("business_line").to_list()
    unphased = (
        scored.sort("business_line", "deal_id")
        .group_by("business_line")
        .agg(exact_sum(pl.col("naive_weighted_amount"), MONEY_SCALE))
        .iter_rows()
    )
    unphased_by_line = dict(unphased)
    unphased_by_line[TOTAL] = float(sum(unphased_by_line.values()))
    rows = []
    for h in HORIZONS:
        for line in [*sorted(set(lines)), TOTAL]:
            g = np.array([i for i, x in enumerate(lines) if line in (x, TOTAL)], dtype=np.int64)
            draws = (sim.open_draws[:, g, :h] + sim.new_draws[:, g, :h]).sum(axis=(1, 2))
            p10, p50, p90 = np.percentile(draws, [10, 50, 90])
            common = {
                "origin_date": origin.date(),
                "horizon_months": h,
                "window_end_date": _window_end(origin, h).date(),
                "business_line": line,
                "open_deal_count": int(
                    scored.height if line == TOTAL else scored.filter(pl.col("business_line") == line).height
                ),
                "training_transitions": model.transitions_observed,
            }
            expected = float(sim.open_expected[g, :h].sum() + sim.new_expected[g, :h].sum())
            for method, forecast, bounds in [
                ("learned", expected, (float(p10), float(p50), float(p90))),
                ("naive", float(naive[g, :h].sum()), (None, None, None)),
                ("naive_unphased", float(unphased_by_line.get(line, 0.0)), (None, None, None)),
            ]:
                rows.append(
                    common
                    | {
                        "method": method,
                        "forecast_revenue": forecast,
                        "simulated_p10": bounds[0],
                        "forecast_p50": bounds[1],
                        "simulated_p90": bounds[2],
                    }
                )
    return pl.DataFrame(rows, schema=_FORECAST_SCHEMA).select(FORECAST_COLUMNS)


def backtest_actuals(spells: pl.LazyFrame, origins: list[datetime]) -> pl.DataFrame:
    """Revenue won per origin x horizon x business line (and 'all'): origin_date, horizon_months,
    business_line, actual_won_revenue. Recomputed on every run (cheap, and never cached)."""
    won = spells.filter(pl.col("is_won")).collect().lazy()
    records = []
    for origin in origins:
        for h in HORIZONS:
            for line, value in _won_by_line(won, origin, _window_end(origin, h)).items():
                records.append(
                    {
                        "origin_date": origin.date(),
                        "horizon_months": h,
                        "business_line": line,
                        "actual_won_revenue": value,
                    }
                )
    return pl.DataFrame(
        records,
        schema={
            "origin_date": pl.Date,
            "horizon_months": pl.Int64,
            "business_line": pl.String,
            "actual_won_revenue": pl.Float64,
        },
    )


def _settings_key(stages: pl.DataFrame, settings: ForecastSettings) -> np.uint64:
    """Hash of what every origin shares: the settings, the stage catalogue, this code, the libraries (the
    fingerprints' hashes are DuckDB's)."""
    catalogue = stages.select(pl.struct(pl.all()).hash(seed=1)).to_series().to_numpy()
    libraries = pl.__version__ + np.__version__ + duckdb.__version__
    text = repr(sorted(asdict(settings).items())) + MODEL_VERSION + libraries
    label = pl.Series([text]).hash(seed=2).to_numpy()[0]
    return np.uint64((int(label) + int(catalogue.sum(dtype=np.uint64))) % 2**64)


FINGERPRINT_DEALS_SQL = f"""
    select deals.deal_id, deals.business_line, deals.expected_close_date, deals.amount_reporting,
        deals.crm_closed_at, coalesce(clients.segment, '{UNKNOWN_SEGMENT}') as segment
    from {{dim_deals}} as deals
    left join {{dim_clients}} as clients on deals.client_id = clients.client_id
"""
"""`{fingerprint_deals}` over the warehouse: one row per deal with what the forecast reads of it and of
its client (the joins of `transforms.forecast.funnel_spells`: a deal without a client is in
UNKNOWN_SEGMENT)."""


def _origin_index_sql(instant: str, origins: list[datetime]) -> str:
    """SQL: how many origins are at or before `instant`, which is the index of the first origin that sees
    it (len(origins) for a null instant, which no origin sees). The origins are consecutive month starts
    (`backtest_origins`), so this is a difference of months, not a search."""
    first, n = origins[0], len(origins)
    for k, origin in enumerate(origins):
        if first.day != 1 or origin != datetime.combine(_add_months(first.date(), k), datetime.min.time()):
            raise ValueError(f"backtest origins must be consecutive month starts, not {origins}")
    months = f"(year({instant}) * 12 + month({instant}) - {first.year * 12 + first.month})"
    # Not coalesce(least(greatest(...))): DuckDB's greatest and least skip nulls.
    return f"case when {instant} is null then {n} else least(greatest({months} + 1, 0), {n}) end"


def origin_fingerprints_from_tables(
    t: Tables,
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings,
    with_amounts: bool,
) -> pl.DataFrame:
    """One row per origin: a 128-bit fingerprint (hex) of everything its forecast reads. Computed in
    DuckDB over `{spells}` (SPELL_COLUMNS), `{fingerprint_deals}` (the columns of FINGERPRINT_DEALS_SQL)
    and, `with_amounts`, `{amounts}` (AMOUNT_COLUMNS): only one sum per origin comes back.

    An origin D reads the spells as known at D (`spells_known_at`: spells entered before D, an exit after
    D not yet known), joined to their deals, and of each deal whether the CRM closed it before D. So:
    - a spell counts in two forms: open (without its exit) from the first origin after it was entered
      to the first after it was exited, and exited (with its exit time) from there on;
    - a deal, from the first origin that sees one of its spells, counts with its attributes (line,
      segment, expected close date, and its amount unless the history gives it) in two forms: not
      closed in the CRM, then closed from the first origin after its CRM close;
    - with the amount history, each of its rows counts at the origins that value the deal at it
      (`amounts_known_at`) and see the deal.

    Each form's hash is added, modulo 2^64, to the origins it spans. So a change of anything an origin
    sees changes its fingerprint, and a change it cannot see (a later event, a deal closing or re-priced
    after D) does not. Spells of deals missing from the deals are left out, as the forecast's inner
    join leaves them out."""
    n = len(origins)
    if n == 0:
        return pl.DataFrame(schema={"origin_date": pl.Date, "input_fingerprint": pl.String})

    def index(instant: str) -> str:
        return _origin_index_sql(instant, origins)

    spell_values = ", ".join(c for c in SPELL_COLUMNS if c != "exited_at")
    deal_values = "deals.deal_id, deals.business_line, deals.expected_close_date, deals.segment" + (
        "" if with_amounts else ", cast(deals.amount_reporting as double)"
    )
    t.materialize(
        "fingerprint_spells",
        f"""
        select deal_id, entered_at, {index("entered_at")} as entered, {index("exited_at")} as exited,
            hash('open', {spell_values}) as open_hash,
            hash('exited', {spell_values}, exited_at) as exited_hash
        from {{spells}}
        where deal_id in (select deal_id from {{fingerprint_deals}})
        """,
    )
    t.materialize(
        "fingerprint_seen",
        f"""
        select deals.deal_id, seen.seen, {index("deals.crm_closed_at")} as crm_closed,
            hash('deal', {deal_values}) as open_hash,
            hash('deal closed', {deal_values}) as closed_hash
        from {{fingerprint_deals}} as deals
        inner join (
            select deal_id, {index("min(entered_at)")} as seen from {{fingerprint_spells}} group by deal_id
        ) as seen on deals.deal_id = seen.deal_id
        """,
    )
    # A deal's first amount also values it at the origins before its known_from (`amounts_known_at`).
    amount_spans = (
        f"""
        union all
        select greatest(seen.seen, case when row_number() over deal_rows = 1 then 0
                else {index("amounts.known_from")} end),
            {index("lead(amounts.known_from) over deal_rows")},
            hash('amount', amounts.deal_id, cast(amounts.amount_reporting as double))
        from {{amounts}} as amounts
        inner join {{fingerprint_seen}} as seen on amounts.deal_id = seen.deal_id
        window deal_rows as (partition by amounts.deal_id order by amounts.known_from)
        """
        if with_amounts
        else ""
    )
    # Each span adds its hash at its first origin and takes it back at its stop: the running sum of
    # these differences over the origins is, at each origin, the sum of the spans it is in.
    differences = t.frame(
        f"""
        with spans (start, stop, value) as (
            select entered, exited, open_hash from {{fingerprint_spells}}
            union all
            select greatest(entered, exited), {n}, exited_hash from {{fingerprint_spells}}
            union all
            select seen, crm_closed, open_hash from {{fingerprint_seen}}
            union all
            select greatest(seen, crm_closed), {n}, closed_hash from {{fingerprint_seen}}
            {amount_spans}
        ),
        live as (select * from spans where start < stop)
        select origin, cast(sum(value) as varchar) as value
        from (
            select start as origin, cast(value as hugeint) as value from live
            union all
            select stop, -cast(value as hugeint) from live where stop < {n}
        )
        group by origin
        """
    )
    by_origin = {origin: int(value) for origin, value in differences.iter_rows()}
    key = int(_settings_key(stages, settings))
    fingerprints, running = [], 0
    for k in range(n):
        running = (running + by_origin.get(k, 0)) % 2**64
        fingerprints.append(f"{running:016x}{key:016x}")
    return pl.DataFrame(
        {"origin_date": [o.date() for o in origins], "input_fingerprint": fingerprints},
        schema={"origin_date": pl.Date, "input_fingerprint": pl.String},
    )


def origin_fingerprints(
    spells: pl.LazyFrame | pl.DataFrame,
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings,
    amounts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`origin_fingerprints_from_tables` over a frame of `funnel_spells` (its deal columns taken once per
    deal) and, if given, the amount history: the same SQL, over frames."""
    frame = spells.collect() if isinstance(spells, pl.LazyFrame) else spells
    deals = frame.select(
        "deal_id", "business_line", "expected_close_date", "amount_reporting", "crm_closed_at", "segment"
    ).unique("deal_id", keep="first", maintain_order=True)
    sources: dict[str, pl.DataFrame] = {"spells": frame.select(SPELL_COLUMNS), "fingerprint_deals": deals}
    if amounts is not None:
        sources["amounts"] = amounts.select(AMOUNT_COLUMNS)
    with frame_tables(sources) as t:
        return origin_fingerprints_from_tables(t, stages, origins, settings, amounts is not None)


def _amount_rows(amounts: pl.DataFrame) -> pl.DataFrame:
    """The amount history sorted by deal and known_from, each row with the span in which it is the
    amount known (`amounts_known_at`): `is_first` (the deal's first row, which also holds before its
    known_from) and `next_from` (the next row's known_from; 9999-01-01 for the last). Built from
    neighbouring rows: cheaper than windows over each deal."""
    deal = pl.col("deal_id")
    return amounts.sort("deal_id", "known_from").with_columns(
        is_first=deal != deal.shift(1).fill_null(""),
        next_from=pl.when(deal == deal.shift(-1))
        .then(pl.col("known_from").shift(-1))
        .otherwise(pl.lit(datetime(9999, 1, 1))),
    )


@dataclass(frozen=True)
class BacktestRun:
    rows: pl.DataFrame
    """The backtest table: one row per origin x horizon x line x method, COLUMNS."""
    recomputed: list[date]
    """Origins whose forecast was computed in this run (new, or inputs changed)."""
    reused: list[date]
    """Origins whose forecast was taken from the previous table (same fingerprint)."""


def run_backtest(
    spells: pl.LazyFrame | Callable[[], pl.LazyFrame],
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings | None = None,
    previous: pl.DataFrame | None = None,
    amounts: pl.DataFrame | Callable[[], pl.DataFrame] | None = None,
    fingerprints: pl.DataFrame | None = None,
    won_spells: Callable[[], pl.LazyFrame] | None = None,
) -> BacktestRun:
    """The backtest over `origins`, reusing from `previous` (an earlier backtest table) the forecast of
    every origin whose input fingerprint is unchanged. `amounts` (AMOUNT_COLUMNS): the deals' amount
    history, to value each deal at its amount known at the origin; None: at the spells' amounts.

    `fingerprints`: the origins' fingerprints already computed where the spells are
    (`origin_fingerprints_from_tables` over the warehouse). The spells and the amount history are then
    read only if an origin must be computed: `spells` and `amounts` can be functions that read them, and
    `won_spells` one that reads the won spells alone, all the actuals need (default: every spell)."""
    settings = settings or ForecastSettings()
    read: list[pl.DataFrame] = []

    def every_spell() -> pl.DataFrame:
        if not read:  # read once, cut many times
            read.append((spells if isinstance(spells, pl.LazyFrame) else spells()).collect())
        return read[0]

    def amount_history() -> pl.DataFrame | None:
        return amounts if amounts is None or isinstance(amounts, pl.DataFrame) else amounts()

    if fingerprints is None:
        fingerprints = origin_fingerprints(every_spell(), stages, origins, settings, amount_history())
    kept = pl.DataFrame(schema=_FORECAST_SCHEMA | {"input_fingerprint": pl.String})
    usable = previous is not None and {*FORECAST_COLUMNS, "input_fingerprint"} <= set(previous.columns)
    if usable and previous.height:
        kept = previous.join(fingerprints, on=["origin_date", "input_fingerprint"], how="semi").select(
            *FORECAST_COLUMNS, "input_fingerprint"
        )
    reused = set(kept.get_column("origin_date").unique().to_list())
    to_compute = [origin for origin in origins if origin.date() not in reused]
    fresh: list[pl.DataFrame] = []
    if to_compute:
        history = amount_history()
        valued = AmountsAtOrigins(every_spell(), history) if history is not None else None
        fresh = _forecasts_overlapped(every_spell().lazy(), stages, to_compute, settings, valued)
    forecasts = pl.concat(
        [
            kept.drop("input_fingerprint"),
            *fresh,
        ]
    ).join(fingerprints, on="origin_date", how="left")
    if forecasts.height == 0:
        return BacktestRun(pl.DataFrame(), [], [])
    actual_spells = every_spell().lazy() if read or won_spells is None else won_spells()
    rows = finish_backtest(forecasts, backtest_actuals(actual_spells, origins))
    return BacktestRun(
        rows=rows,
        recomputed=sorted(o.date() for o in origins if o.date() not in reused),
        reused=sorted(reused),
    )


def _forecasts_overlapped(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings,
    amounts: AmountsAtOrigins | None,
) -> list[pl.DataFrame]:
    """`backtest_forecast_at` of each origin, in order, each origin's model learned while the previous
    origin is simulated on a second thread: the learning runs in Polars and the simulation in numpy,
    both mostly outside the GIL, so on a machine of few cores they overlap instead of taking turns.
    At most one origin waits for its simulation, so memory holds one cut of the spells and two origins'
    scored deals, as before plus one origin's. Every origin has its own seed: the rows are the same as
    one after the other."""
    out: list[pl.DataFrame] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backtest-simulation") as simulation:
        pending: Future | None = None
        for origin in origins:
            scored, model = _learned_at(spells, stages, origin, settings, amounts)
            if pending is not None:
                out.append(pending.result())
            pending = simulation.submit(_forecast_rows, origin, scored, model, settings)
            del scored, model
        if pending is not None:
            out.append(pending.result())
    return out


def finish_backtest(forecasts: pl.DataFrame, actuals: pl.DataFrame) -> pl.DataFrame:
    """Forecasts (FORECAST_COLUMNS + input_fingerprint) with their actuals, the calibrated range and the
    errors: the backtest table."""
    joined = forecasts.join(
        actuals, on=["origin_date", "horizon_months", "business_line"], how="left"
    ).with_columns(pl.col("actual_won_revenue").fill_null(0.0))
    scores = joined.filter(pl.col("method") == "learned").select(
        "horizon_months",
        "window_end_date",
        score=calibration_score(
            pl.col("simulated_p10"),
            pl.col("forecast_p50"),
            pl.col("simulated_p90"),
            pl.col("actual_won_revenue"),
        ),
    )
    origins = sorted(joined.get_column("origin_date").unique().to_list())
    calibration = calibration_by_origin(scores, origins)
    p10, p90 = widened(
        pl.col("simulated_p10"),
        pl.col("forecast_p50"),
        pl.col("simulated_p90"),
        pl.col("calibration_log_variance").fill_null(0.0),
    )
    learned = pl.col("method") == "learned"
    return (
        joined.join(calibration, on=["origin_date", "horizon_months"], how="left")
        .with_columns(
            forecast_p10=p10,
            forecast_p90=p90,
            calibration_log_sd=pl.when(learned).then(
                pl.col("calibration_log_variance").fill_null(0.0).sqrt()
            ),
            calibration_scores=pl.when(learned).then(pl.col("calibration_scores")),
            error=pl.col("forecast_revenue") - pl.col("actual_won_revenue"),
        )
        .with_columns(
            percentage_error=pl.when(pl.col("actual_won_revenue") > 0).then(
                pl.col("error") / pl.col("actual_won_revenue")
            ),
            is_actual_in_p10_p90=pl.when(pl.col("forecast_p10").is_not_null()).then(
                pl.col("actual_won_revenue").is_between(pl.col("forecast_p10"), pl.col("forecast_p90"))
            ),
            is_actual_in_simulated_p10_p90=pl.when(pl.col("simulated_p10").is_not_null()).then(
                pl.col("actual_won_revenue").is_between(pl.col("simulated_p10"), pl.col("simulated_p90"))
            ),
        )
        .with_columns(absolute_percentage_error=pl.col("percentage_error").abs())
        .select(COLUMNS)
        .sort("origin_date", "horizon_months", "business_line", "method")
    )


def backtest(
    spells: pl.LazyFrame,
    stages: pl.DataFrame,
    origins: list[datetime],
    settings: ForecastSettings | None = None,
    amounts: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per origin x horizon (1, 3 months) x business line (and 'all') x method, with errors."""
    return run_backtest(spells, stages, origins, settings, amounts=amounts).rows


def backtest_at(
    spells: pl.LazyFrame, stages: pl.DataFrame, origin: datetime, settings: ForecastSettings
) -> pl.DataFrame:
    """Forecast and actual at one origin, the range as simulated (one origin has no earlier windows to
    calibrate with): one row per horizon x business line (and 'all') x method."""
    return backtest_forecast_at(spells, stages, origin, settings).join(
        backtest_actuals(spells, [origin]), on=["origin_date", "horizon_months", "business_line"], how="left"
    )


def backtest_summary(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per horizon x business line x method: MAPE, bias, P10-P90 coverage over the origins."""
    return (
        rows.group_by("horizon_months", "business_line", "method")
        .agg(
            origins=pl.len(),
            first_origin_date=pl.col("origin_date").min(),
            last_origin_date=pl.col("origin_date").max(),
            mape=pl.col("absolute_percentage_error").mean(),
            median_ape=pl.col("absolute_percentage_error").median(),
            bias=pl.col("percentage_error").mean(),
            p10_p90_coverage=pl.col("is_actual_in_p10_p90").cast(pl.Float64).mean(),
            simulated_p10_p90_coverage=pl.col("is_actual_in_simulated_p10_p90").cast(pl.Float64).mean(),
            total_forecast_revenue=pl.col("forecast_revenue").sum(),
            total_actual_won_revenue=pl.col("actual_won_revenue").sum(),
        )
        .sort("horizon_months", "business_line", "method")
    )
