"""The forecast's pieces on hand-computed chains, and on a small synthetic funnel whose figures follow
from the way it is built: no leakage in the backtest, reproducible simulation, sensible totals."""

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.forecast import (
    SPELL_ORDER,
    ForecastSettings,
    cutoff_for,
    forecast_as_of,
    funnel_spells,
    learn_funnel_model,
    month_edges,
    month_index,
    open_deals_at,
    row_percentiles,
    score_open_deals,
    simulate,
    spells_known_at,
)
from transforms.forecast_backtest import (
    AmountsAtOrigins,
    _origin_index_sql,
    amounts_known_at,
    backtest,
    backtest_at,
    backtest_origins,
    backtest_summary,
    origin_fingerprints,
    run_backtest,
)
from transforms.forecast_calibration import (
    Z,
    calibration_at,
    calibration_by_origin,
    calibration_score,
    conformal_log_variance,
    widened_values,
)
from transforms.forecast_chain import absorption_win_probability, age_factors, stage_win_probabilities
from transforms.forecast_history import deal_states_at, forecast_changes
from transforms.sql import frame_tables

STAGES = pl.DataFrame(
    {
        "pipeline_id": ["L"] * 4,
        "stage_id": ["a", "b", "won", "lost"],
        "stage_order": [1, 2, 3, 4],
        "is_won": [False, False, True, False],
        "is_lost": [False, False, False, True],
        "is_terminal": [False, False, True, True],
        "win_probability": [0.2, 0.6, 1.0, 0.0],
    }
)


def test_absorbing_chain_by_hand():
    # States a, b; a -> b 0.5, a -> lost 0.5; b -> a 0.2, b -> won 0.6, b -> lost 0.2.
    # w_a = 0.5 w_b ; w_b = 0.2 w_a + 0.6 = 0.1 w_b + 0.6  =>  w_b = 0.6 / 0.9 = 2/3, w_a = 1/3.
    matrix = np.array(
        [
            # a    b    won  lost
            [0.0, 0.5, 0.0, 0.5],
            [0.2, 0.0, 0.6, 0.2],
        ]
    )
    assert absorption_win_probability(matrix) == pytest.approx([1 / 3, 2 / 3])


def test_days_in_stage_are_the_same_however_the_frame_is_cut():
    """Polars divides a column by a scalar as a multiplication by its reciprocal, except in a chunk of
    one row, where it divides: a day count must not depend on that. (The live forecast, which reads
    fewer deals, and the recomputation over every spell once gave one deal's days one bit apart.)"""
    cutoff = datetime(2026, 11, 27)
    n = 1000
    spells = pl.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(n)],
            "entered_at": [datetime(2025, 12, 21, 4, 39, 27) - timedelta(minutes=7 * i) for i in range(n)],
            "exited_at": [None] * n,
            "is_terminal": [False] * n,
            "crm_closed_at": [None] * n,
        },
        schema_overrides={"exited_at": pl.Datetime("us"), "crm_closed_at": pl.Datetime("us")},
    )
    together = open_deals_at(spells.lazy(), cutoff).collect().get_column("days_in_stage")
    picked = range(0, n, 37)
    alone = [open_deals_at(spells.slice(i, 1).lazy(), cutoff).collect()["days_in_stage"][0] for i in picked]
    assert alone == together.gather(list(picked)).to_list()


def test_age_factor_medians_are_polars_medians():
    """The age factors count stays into buckets in DuckDB; the stage's median stay is still Polars' (the
    two middle stays as lower + (upper - lower) / 2), which DuckDB's median can miss by a bit: for stays
    of 0.05, 0.1, 0.7 and 2 days it gives 0.39999999999999997, Polars 0.4."""
    days = [0.05, 0.1, 0.7, 2.0]
    start = datetime(2025, 1, 6)
    spells = pl.DataFrame(
        {
            "business_line": ["L"] * 4,
            "segment": ["s"] * 4,
            "from_stage_id": ["a"] * 4,
            "stage_id": ["b"] * 4,
            "is_won": [False] * 4,
            "is_lost": [False] * 4,
            "is_terminal": [False] * 4,
            "entered_at": [start + timedelta(days=d) for d in days],
            "exited_at": [None] * 4,
            "entry_direction": ["forward"] * 4,
            "from_entered_at": [start] * 4,
            "from_stage_days": days,
            "crm_closed_at": [None] * 4,
        },
        schema_overrides={"exited_at": pl.Datetime("us"), "crm_closed_at": pl.Datetime("us")},
    )
    line_win = pl.LazyFrame({"business_line": ["L"], "stage_id": ["b"], "win_probability": [0.5]})
    age = age_factors(spells.lazy(), line_win, datetime(2026, 1, 1), (1.0, 2.0), 180.0, 10.0)
    assert pl.Series(days).median() == 0.4
    assert age.get_column("median_stay_days").unique().to_list() == [0.4]
    # Bucket 0 holds all four stays; bucket 1 (from the median) the two longer ones.
    assert dict(zip(age["age_bucket"], age["stays_in_bucket"], strict=True)) == {0: 4, 1: 2, 2: 1}


def _transitions(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    expanded = [(seg, frm, to) for seg, frm, to, n in rows for _ in range(n)]
    return pl.DataFrame(
        {
            "business_line": ["L"] * len(expanded),
            "segment": [r[0] for r in expanded],
            "from_stage_id": [r[1] for r in expanded],
            "to_state": [r[2] for r in expanded],
        }
    )


def test_small_segment_is_shrunk_toward_its_line():
    transitions = _transitions(
        [
            ("s1", "a", "b", 6),
            ("s1", "a", "lost", 4),
            ("s1", "b", "won", 3),
            ("s1", "b", "lost", 1),
            ("s2", "a", "b", 2),
            ("s2", "a", "lost", 8),
            ("s2", "b", "won", 1),
            ("s2", "b", "lost", 3),
        ]
    )
    out = stage_win_probabilities(transitions, STAGES, ["s1", "s2", "s3"], prior_strength=10.0)
    win = {(r["segment"], r["stage_id"]): r["win_probability"] for r in out.iter_rows(named=True)}
    # Line: a -> b 8/20 = 0.4, b -> won 4/8 = 0.5; P(win | b) = 0.5, P(win | a) = 0.4 x 0.5 = 0.2.
    assert win[("all", "b")] == pytest.approx(0.5)
    assert win[("all", "a")] == pytest.approx(0.2)
    # s1 with k = 10: a -> b (6 + 10 x 0.4) / (10 + 10) = 0.5; b -> won (3 + 10 x 0.5) / (4 + 10) = 4/7.
    assert win[("s1", "b")] == pytest.approx(4 / 7)
    assert win[("s1", "a")] == pytest.approx(0.5 * 4 / 7)
    # A segment without exits is its line.
    assert win[("s3", "a")] == pytest.approx(0.2)


def test_stage_never_left_falls_back_to_crm_probability():
    out = stage_win_probabilities(_transitions([("s1", "a", "lost", 5)]), STAGES, ["s1"], prior_strength=10.0)
    b = out.filter((pl.col("segment") == "all") & (pl.col("stage_id") == "b"))
    assert b.get_column("win_probability").item() == pytest.approx(0.6)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=5), st.integers(min_value=0, max_value=2**32 - 1))
def test_absorption_probabilities_are_probabilities_and_solve_the_chain(n, seed):
    rng = np.random.default_rng(seed)
    rows = rng.random((n, n + 2))
    rows[:, n + 1] += 0.05  # every state can be lost, so the chain is absorbing
    rows /= rows.sum(axis=1, keepdims=True)
    win = absorption_win_probability(rows)
    assert np.all((win >= 0) & (win <= 1))
    # First-step equation: w = R_won + Q w.
    assert win == pytest.approx(rows[:, n] + rows[:, :n] @ win, abs=1e-9)


# --- a small synthetic funnel ------------------------------------------------------------------------


def synthetic_inputs(seed: int = 1, deals: int = 900, start: datetime = datetime(2024, 1, 1)):
    """One pipeline a -> b -> won/lost over 20 months: 45 % of a-stays go on to b, 60 % of b-stays win;
    stays last about 10 days; amounts 1 000-10 000 EUR; a fifth of the deals not won have no amount."""
    rng = np.random.default_rng(seed)
    created = start + np.sort(rng.uniform(0, 600, deals)) * timedelta(days=1)
    spell_rows, deal_rows = [], []
    for i, t0 in enumerate(created):
        deal_id = f"D{i:04d}"
        t1 = t0 + timedelta(days=float(rng.exponential(10.0)) + 0.5)
        events = [("a", t0), ("b", t1) if rng.random() < 0.45 else ("lost", t1)]
        if events[-1][0] == "b":
            t2 = t1 + timedelta(days=float(rng.exponential(10.0)) + 0.5)
            events.append(("won" if rng.random() < 0.6 else "lost", t2))
        for k, (stage, at) in enumerate(events):
            spell_rows.append(
                {
                    "spell_id": f"E{i:04d}{k}",
                    "deal_id": deal_id,
                    "pipeline_id": "L",
                    "stage_id": stage,
                    "stage_order": {"a": 1, "b": 2, "won": 3, "lost": 4}[stage],
                    "is_won": stage == "won",
                    "is_lost": stage == "lost",
                    "is_terminal": stage in ("won", "lost"),
                    "entered_at": at,
                    "exited_at": events[k + 1][1] if k + 1 < len(events) else None,
                    "from_stage_id": events[k - 1][0] if k else None,
                    "from_entered_at": events[k - 1][1] if k else None,
                    "entry_direction": "enter"
                    if k == 0
                    else ("won" if stage == "won" else "lost" if stage == "lost" else "forward"),
                }
            )
        deal_rows.append(
            {
                "deal_id": deal_id,
                "business_line": "L",
                "client_id": f"C{i % 50:02d}",
                # As in a CRM, a won deal always carries its amount; a fifth of the others have none.
                "amount_reporting": None
                if events[-1][0] != "won" and rng.random() < 0.2
                else float(rng.uniform(1_000, 10_000)),
                "expected_close_date": (t0 + timedelta(days=25)).date(),
                "closed_at": events[-1][1] if events[-1][0] in ("won", "lost") else None,
            }
        )
    spells = pl.DataFrame(
        spell_rows, schema_overrides={"exited_at": pl.Datetime("us"), "from_entered_at": pl.Datetime("us")}
    )
    deals_frame = pl.DataFrame(deal_rows, schema_overrides={"amount_reporting": pl.Float64})
    clients = pl.DataFrame({"client_id": [f"C{i:02d}" for i in range(50)], "segment": ["s1", "s2"] * 25})
    return spells, deals_frame, clients


def synthetic_spells(spells: pl.DataFrame, deals: pl.DataFrame, clients: pl.DataFrame) -> pl.LazyFrame:
    return funnel_spells(
        spells.lazy(),
        deals.rename({"closed_at": "crm_closed_at"}).lazy(),
        clients.lazy(),
        STAGES.lazy(),
    )


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_inputs()


FAST = ForecastSettings(simulations=400)


def test_open_pipeline_is_rebuilt_from_spells_before_the_cutoff():
    at = datetime(2024, 3, 1)
    spells = pl.DataFrame(
        {
            "deal_id": ["X", "X", "Y", "Z"],
            "stage_id": ["a", "won", "a", "a"],
            "is_terminal": [False, True, False, False],
            "entered_at": [
                at - timedelta(days=3),
                at + timedelta(days=2),
                at - timedelta(days=1),
                at + timedelta(days=1),
            ],
            "exited_at": [at + timedelta(days=2), None, None, None],
            "crm_closed_at": [at + timedelta(days=2), at + timedelta(days=2), at - timedelta(days=1), None],
        }
    ).lazy()
    open_now = open_deals_at(spells_known_at(spells, at), at).collect()
    # X is open at the cutoff (won two days later); Y's CRM record closed before it (history gap);
    # Z was created after it.
    assert open_now.get_column("deal_id").to_list() == ["X"]
    assert open_now.get_column("days_in_stage").item() == pytest.approx(3.0)


def test_backtest_forecast_identical_when_only_future_events_are_added(synthetic):
    """Plant stage events after the origin only: every forecast figure at the origin and before it stays
    the same to the last bit, the calibrated range included (its scores come from windows that closed by
    the origin), while the actual moves."""
    spells, deals, clients = synthetic
    origin = datetime(2025, 3, 1)
    origins = [datetime(2024, m, 1) for m in (10, 11, 12)] + [datetime(2025, m, 1) for m in (1, 2, 3)]
    before = backtest(synthetic_spells(spells, deals, clients), STAGES, origins, FAST)
    open_ids = open_deals_at(
        spells_known_at(synthetic_spells(spells, deals, clients), origin), origin
    ).collect()
    won_ids = spells.filter(pl.col("is_won")).get_column("deal_id")
    target = open_ids.filter(
        pl.col("amount_reporting").is_not_null() & ~pl.col("deal_id").is_in(won_ids.implode())
    ).get_column("deal_id")[0]
    # The deal's open spell now ends the day after the origin with a win; a later lost spell is appended
    # to another, already closed deal (events after the origin only).
    closed = deals.filter(pl.col("closed_at") < origin).get_column("deal_id")[0]
    future = pl.DataFrame(
        [
            {
                "spell_id": "F1",
                "deal_id": target,
                "pipeline_id": "L",
                "stage_id": "won",
                "stage_order": 3,
                "is_won": True,
                "is_lost": False,
                "is_terminal": True,
                "entered_at": origin + timedelta(days=1),
                "exited_at": None,
                "from_stage_id": "a",
                "from_entered_at": None,
                "entry_direction": "won",
            },
            {
                "spell_id": "F2",
                "deal_id": closed,
                "pipeline_id": "L",
                "stage_id": "a",
                "stage_order": 1,
                "is_won": False,
                "is_lost": False,
                "is_terminal": False,
                "entered_at": origin + timedelta(days=2),
                "exited_at": None,
                "from_stage_id": "lost",
                "from_entered_at": None,
                "entry_direction": "reopen",
            },
        ],
        schema=spells.schema,
    )
    planted = pl.concat(
        [
            spells.filter(~((pl.col("deal_id") == target) & (pl.col("entered_at") >= origin))).with_columns(
                exited_at=pl.when((pl.col("deal_id") == target) & pl.col("exited_at").is_null())
                .then(pl.lit(origin + timedelta(days=1)))
                .otherwise(pl.col("exited_at"))
            ),
            future,
        ]
    )
    after = backtest(synthetic_spells(planted, deals, clients), STAGES, origins, FAST)
    forecast_columns = [
        "origin_date",
        "horizon_months",
        "business_line",
        "method",
        "forecast_revenue",
        "forecast_p10",
        "forecast_p50",
        "forecast_p90",
        "simulated_p10",
        "simulated_p90",
        "calibration_log_sd",
        "calibration_scores",
        "open_deal_count",
        "input_fingerprint",
    ]
    assert after.select(forecast_columns).equals(before.select(forecast_columns))
    at_origin = pl.col("origin_date") == origin.date()
    # The calibration at the origin had earlier closed windows to learn from (2 series x 5 or 3 windows).
    learned = after.filter(at_origin & (pl.col("method") == "learned"))
    assert learned["calibration_scores"].to_list() == [10, 10, 6, 6]
    # The planted win is in the actuals.
    assert (
        after.filter(at_origin)["actual_won_revenue"] > before.filter(at_origin)["actual_won_revenue"]
    ).all()
    # The one-origin helper agrees with the full run on what was simulated.
    single = backtest_at(synthetic_spells(planted, deals, clients), STAGES, origin, FAST).sort(
        "horizon_months", "business_line", "method"
    )
    assert single["simulated_p90"].equals(after.filter(at_origin)["simulated_p90"])


def test_forecast_is_reproducible_and_percentiles_ordered(synthetic):
    spells = synthetic_spells(*synthetic).collect().lazy()
    first = forecast_as_of(spells, STAGES, date(2025, 6, 15), settings=FAST)
    second = forecast_as_of(spells, STAGES, date(2025, 6, 15), settings=FAST)
    assert first.periods.equals(second.periods)
    assert first.deals.equals(second.deals)
    p = first.periods
    assert ((p["revenue_p10"] <= p["revenue_p50"]) & (p["revenue_p50"] <= p["revenue_p90"])).all()
    assert first.deals["win_probability"].is_between(0.0, 1.0).all()


def test_open_deal_win_probability_matches_the_built_funnel(synthetic):
    # Built: P(win | a) = 0.45 x 0.6 = 0.27, P(win | b) = 0.6, for both segments, no age effect.
    result = forecast_as_of(synthetic_spells(*synthetic), STAGES, date(2025, 6, 15), settings=FAST)
    by_stage = result.deals.group_by("stage_id").agg(pl.col("stage_win_probability").mean())
    expected = {"a": 0.27, "b": 0.6}
    for stage, p in by_stage.iter_rows():
        assert p == pytest.approx(expected[stage], abs=0.08)


def test_month_rows_add_up_to_quarters_and_segments_to_lines(synthetic):
    result = forecast_as_of(synthetic_spells(*synthetic), STAGES, date(2025, 6, 15), settings=FAST)
    p = result.periods
    quarter = p.filter(
        (pl.col("period_type") == "quarter")
        & (pl.col("period_start") == date(2025, 7, 1))
        & (pl.col("segment") == "all")
        & (pl.col("business_line") == "all")
    )["expected_revenue"].item()
    months = p.filter(
        (pl.col("period_type") == "month")
        & pl.col("period_start").is_between(date(2025, 7, 1), date(2025, 9, 1))
        & (pl.col("segment") == "all")
        & (pl.col("business_line") == "all")
    )["expected_revenue"].sum()
    assert quarter == pytest.approx(months)
    parts = p.filter((pl.col("period_type") == "month") & (pl.col("segment") != "all"))
    lines = p.filter(
        (pl.col("period_type") == "month") & (pl.col("segment") == "all") & (pl.col("business_line") == "L")
    )
    assert parts["expected_revenue"].sum() == pytest.approx(lines["expected_revenue"].sum())


def test_backtest_learned_beats_naive_on_the_synthetic_funnel(synthetic):
    spells = synthetic_spells(*synthetic).collect()
    origins = backtest_origins(spells["entered_at"].min(), date(2025, 8, 20), 12, 3)
    assert origins[0] == datetime(2025, 2, 1) and origins[-1] == datetime(2025, 5, 1)
    summary = backtest_summary(backtest(spells.lazy(), STAGES, origins, FAST).lazy()).collect()
    mape = {
        (h, m): v
        for h, m, v in summary.filter(pl.col("business_line") == "all")
        .select("horizon_months", "method", "mape")
        .iter_rows()
    }
    assert mape[(1, "learned")] < mape[(1, "naive_unphased")]


def test_forecast_changes_name_what_moved_and_add_up():
    def run(as_of, rows):
        return pl.DataFrame(
            [
                {
                    "as_of_date": as_of,
                    "current_quarter_start": date(2025, 4, 1),
                    "deal_id": d,
                    "business_line": "L",
                    "segment": "s1",
                    "stage_id": s,
                    "stage_order": o,
                    "deal_amount_reporting": a,
                    "win_probability": p,
                    "expected_won_amount": p * a,
                    "expected_revenue_current_quarter": q,
                }
                for d, s, o, a, p, q in rows
            ]
        )

    previous = run(
        date(2025, 5, 1),
        [("A", "a", 1, 100.0, 0.3, 10.0), ("B", "b", 2, 200.0, 0.6, 90.0), ("C", "a", 1, 50.0, 0.3, 5.0)],
    )
    latest = run(date(2025, 5, 8), [("A", "b", 2, 100.0, 0.6, 40.0), ("D", "a", 1, 80.0, 0.3, 8.0)])
    states = pl.DataFrame(
        {
            "deal_id": ["A", "B", "C", "D"],
            "state": ["open", "won", "lost", "open"],
            "state_entered_at": [
                datetime(2025, 5, 2),
                datetime(2025, 5, 3),
                datetime(2025, 5, 4),
                datetime(2025, 5, 5),
            ],
            "amount_reporting": [100.0, 200.0, 50.0, 80.0],
        }
    )
    changes = forecast_changes(previous.lazy(), latest.lazy(), states.lazy()).collect()
    kind = dict(changes.select("deal_id", "change_type").iter_rows())
    assert kind == {"A": "moved_forward", "B": "won", "C": "lost", "D": "added"}
    contribution = dict(changes.select("deal_id", "contribution").iter_rows())
    # A: 0.6 x 100 - 0.3 x 100 = 30; B: won 200 - 0.6 x 200 = 80; C: 0 - 15 = -15; D: 0.3 x 80 = 24.
    assert contribution == pytest.approx({"A": 30.0, "B": 80.0, "C": -15.0, "D": 24.0})
    # Quarter: A 40 - 10 = 30; B won inside the quarter: 200 - 90 = 110; C: -5; D: 8.
    quarter = dict(changes.select("deal_id", "contribution_current_quarter").iter_rows())
    assert quarter == pytest.approx({"A": 30.0, "B": 110.0, "C": -5.0, "D": 8.0})
    assert changes["previous_as_of_date"].unique().to_list() == [date(2025, 5, 1)]


def test_deal_states_at_a_cutoff(synthetic):
    spells = synthetic_spells(*synthetic)
    cutoff = cutoff_for(date(2025, 6, 15))
    states = deal_states_at(spells, cutoff).collect()
    open_ids = open_deals_at(spells_known_at(spells, cutoff), cutoff).collect()["deal_id"]
    assert set(states.filter(pl.col("state") == "open")["deal_id"]) == set(open_ids)
    assert set(states["state"].unique()) <= {"open", "won", "lost", "closed_in_crm"}


# --- bounded-memory simulation, calibration, incremental backtest -----------------------------------


def test_spells_read_in_order_give_the_frame_funnel_spells_sorts(synthetic):
    # The asset has DuckDB sort the spells as it reads them and funnel_spells keep that order through
    # its joins: the frame must be the one it builds from spells in any order and sorts itself,
    # whatever the order of the deals and clients it joins.
    spells, deals, clients = synthetic
    shuffled = spells.sample(fraction=1.0, shuffle=True, seed=3)
    expected = synthetic_spells(shuffled, deals, clients).collect()
    assert expected.equals(expected.sort(SPELL_ORDER))
    deals = deals.sample(fraction=1.0, shuffle=True, seed=4)
    presorted = funnel_spells(
        shuffled.sort(SPELL_ORDER).lazy(),
        deals.rename({"closed_at": "crm_closed_at"}).lazy(),
        clients.sample(fraction=1.0, shuffle=True, seed=5).lazy(),
        STAGES.sample(fraction=1.0, shuffle=True, seed=6).lazy(),
        spells_sorted=True,
    ).collect()
    assert presorted.equals(expected)


def test_simulation_does_not_depend_on_the_chunk_size(synthetic):
    """Deals are simulated a chunk at a time from the positions of one random stream: any chunk size
    gives the same draws and the same sums, to the last bit."""
    spells = synthetic_spells(*synthetic).collect().lazy()
    cutoff = cutoff_for(date(2025, 6, 15))
    known = spells_known_at(spells, cutoff)
    model = learn_funnel_model(known, STAGES, cutoff, FAST)
    scored = score_open_deals(open_deals_at(known, cutoff), model, FAST).collect()
    _, edges = month_edges(cutoff, 4)
    assert scored.height > 20
    whole = simulate(scored, model, edges, 7, FAST, chunk_cells=10**9)
    for cells in (FAST.simulations, 7 * FAST.simulations):  # one deal, seven deals per chunk
        chunked = simulate(scored, model, edges, 7, FAST, chunk_cells=cells)
        for name in (
            "open_draws",
            "new_draws",
            "open_expected",
            "deal_month_probability",
            "remaining_day_percentiles",
        ):
            assert np.array_equal(getattr(whole, name), getattr(chunked, name)), name


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.integers(0, 400).map(lambda x: x / 4), min_size=1, max_size=40),
        min_size=1,
        max_size=4,
    ).filter(lambda rows: len({len(row) for row in rows}) == 1),
    percents=st.lists(st.floats(0, 100), min_size=1, max_size=4),
)
def test_row_percentiles_are_numpys_to_the_last_bit(rows, percents):
    # Each deal's close-day P10/P50/P90 come from one sort per row; they must be np.percentile's own
    # figures, ties and interpolation weights on both sides of one half included.
    values = np.array(rows)
    expected = np.percentile(values, percents, axis=1).T
    assert np.array_equal(row_percentiles(values.copy(), tuple(percents)), expected)


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(st.floats(0.5, 40), min_size=1, max_size=15),
    days=st.lists(st.floats(-5, 500), max_size=30),
    on_edges=st.lists(st.integers(0, 15), max_size=5),
)
def testmonth_index_is_the_binary_search_it_replaces(steps, days, on_edges):
    # Months by one comparison per edge: the same month as a binary search, days exactly on an edge
    # (the month it starts) and past the last edge (out of the horizon) included.
    edges = np.concatenate([[0.0], np.cumsum(steps)])
    values = np.array(days + [edges[min(i, edges.size - 1)] for i in on_edges])
    expected = np.searchsorted(edges, values, side="right") - 1
    assert np.array_equal(month_index(edges, values), expected)


def test_calibration_score_and_widening_by_hand():
    # Range 80 / 100 / 125: s_lo = s_hi = ln(1.25) / z = 0.22314 / 1.28155 = 0.17412.
    s = np.log(1.25) / Z
    frame = pl.DataFrame(
        {"p10": [80.0] * 4, "p50": [100.0] * 4, "p90": [125.0] * 4, "a": [90.0, 50.0, 200.0, 0.0]}
    )
    scores = frame.select(calibration_score(*(pl.col(c) for c in ("p10", "p50", "p90", "a")))).to_series()
    # 90 is inside: 0. 50 below: (ln 2 / z)^2 - s^2 = 0.29253 - 0.03032. 200 above: (ln 2 / z)^2 - s^2 too.
    # 0 below a positive range: no widening can reach it.
    needed = (np.log(2.0) / Z) ** 2 - s**2
    assert scores.to_list()[:3] == pytest.approx([0.0, needed, needed])
    assert scores[3] == float("inf")
    # Widened by exactly that variance, the range just reaches 50 and 200; the median stays.
    low, high = widened_values(80.0, 100.0, 125.0, needed)
    assert (low, high) == pytest.approx((50.0, 200.0))
    assert widened_values(80.0, 100.0, 125.0, 0.0) == (80.0, 125.0)


def test_conformal_quantile_uses_only_windows_closed_by_the_origin():
    # Nine closed windows with scores 0.1 .. 0.9: k = ceil(0.8 x 10) = 8, the 8th smallest = 0.8.
    closed = pl.DataFrame(
        {
            "horizon_months": [1] * 9,
            "window_end_date": [date(2025, m, 1) for m in range(1, 10)],
            "score": [0.1 * k for k in range(1, 10)],
        }
    )
    # A window still open at the origin, with a score that would dominate, must not count.
    still_open = pl.DataFrame({"horizon_months": [1], "window_end_date": [date(2025, 10, 1)], "score": [3.0]})
    out = calibration_by_origin(pl.concat([closed, still_open]), [date(2025, 9, 1), date(2025, 3, 1)])
    first, early = out.rows(named=True)
    assert first["calibration_scores"] == 9
    assert first["calibration_log_variance"] == pytest.approx(0.8)
    # Three windows closed by 2025-03-01: ceil(0.8 x 4) = 4 > 3, too few to calibrate.
    assert early["calibration_scores"] == 3 and early["calibration_log_variance"] is None
    assert conformal_log_variance(np.array([0.0, 0.0, 0.0, 50.0])) == 4.0  # capped at MAX_LOG_SD^2


def _backtest_inputs(synthetic):
    spells = synthetic_spells(*synthetic).collect()
    origins = backtest_origins(spells["entered_at"].min(), date(2025, 8, 20), 9, 3)
    return spells, origins


def test_fingerprint_sees_what_an_origin_reads_and_nothing_later(synthetic):
    spells, origins = _backtest_inputs(synthetic)
    base = origin_fingerprints(spells, STAGES, origins, FAST)
    # A deal first seen between the 3rd and 4th origin: changing its amount changes the fingerprint
    # of the 4th origin on, not before.
    third, fourth = origins[2], origins[3]
    deal = (
        spells.group_by("deal_id")
        .agg(pl.col("entered_at").min())
        .filter(pl.col("entered_at").is_between(third, fourth, closed="left"))
        .sort("deal_id")["deal_id"][0]
    )
    amended = spells.with_columns(
        amount_reporting=pl.when(pl.col("deal_id") == deal)
        .then(pl.col("amount_reporting").fill_null(0.0) + 1.0)
        .otherwise(pl.col("amount_reporting"))
    )
    changed = (
        base["input_fingerprint"] != origin_fingerprints(amended, STAGES, origins, FAST)["input_fingerprint"]
    )
    assert changed.to_list() == [False] * 3 + [True] * (len(origins) - 3)
    # The CRM closing a deal (and its spell ending) after the last origin changes nothing.
    open_at_last = open_deals_at(spells_known_at(spells.lazy(), origins[-1]), origins[-1]).collect()
    later = datetime(2025, 8, 1)
    target = open_at_last.filter(pl.col("exited_at").is_null())["deal_id"][0]
    closed_later = spells.with_columns(
        crm_closed_at=pl.when(pl.col("deal_id") == target)
        .then(pl.lit(later))
        .otherwise(pl.col("crm_closed_at")),
        exited_at=pl.when((pl.col("deal_id") == target) & pl.col("exited_at").is_null())
        .then(pl.lit(later))
        .otherwise(pl.col("exited_at")),
    )
    assert origin_fingerprints(closed_later, STAGES, origins, FAST).equals(base)
    # Other settings are other inputs.
    other = origin_fingerprints(spells, STAGES, origins, ForecastSettings(simulations=401))
    assert not (other["input_fingerprint"] == base["input_fingerprint"]).any()


def test_an_instant_is_seen_by_the_origins_strictly_after_it():
    """The fingerprints place each instant at the first origin after it (an origin at or before it does
    not see it); a missing instant (a spell not exited, a deal not closed) is seen by none."""
    origins = [datetime(2025, m, 1) for m in (1, 2, 3)]
    instants = pl.DataFrame(
        {
            "instant": [
                datetime(2024, 6, 5),  # before every origin: all see it
                datetime(2025, 1, 1),  # at the first: the second on
                datetime(2025, 1, 31, 23, 59),
                datetime(2025, 3, 1),  # at the last: none
                datetime(2026, 1, 1),
                None,
            ]
        }
    )
    with frame_tables({"instants": instants}) as t:
        found = t.frame(f"select {_origin_index_sql('instant', origins)} as seen_from from {{instants}}")
    assert found["seen_from"].to_list() == [0, 1, 1, 3, 3, 3]
    with pytest.raises(ValueError, match="consecutive month starts"):
        _origin_index_sql("instant", [datetime(2025, 1, 1), datetime(2025, 3, 1)])


def test_a_backtest_that_recomputes_no_origin_reads_only_the_won_spells(synthetic):
    """With the fingerprints computed where the spells are, a day that changed no origin's inputs reads
    the won spells (the actuals), and never every spell nor the amount history; the table is the same."""
    spells, origins = _backtest_inputs(synthetic)
    first = run_backtest(spells.lazy(), STAGES, origins, FAST)
    fingerprints = origin_fingerprints(spells, STAGES, origins, FAST)

    def every_spell() -> pl.LazyFrame:
        raise AssertionError("every spell was read")

    def amount_history() -> pl.DataFrame:
        raise AssertionError("the amount history was read")

    won = spells.filter(pl.col("is_won"))
    again = run_backtest(
        every_spell,
        STAGES,
        origins,
        FAST,
        previous=first.rows,
        amounts=amount_history,
        fingerprints=fingerprints,
        won_spells=won.lazy,
    )
    assert again.recomputed == [] and again.rows.equals(first.rows)
    # A new origin (a month closed) is computed, and so reads them.
    with pytest.raises(AssertionError, match="every spell was read"):
        run_backtest(
            every_spell,
            STAGES,
            origins,
            FAST,
            previous=first.rows.filter(pl.col("origin_date") < origins[-1].date()),
            fingerprints=fingerprints,
            won_spells=won.lazy,
        )


def test_incremental_backtest_reuses_unchanged_origins_and_picks_up_corrections(synthetic):
    spells, origins = _backtest_inputs(synthetic)
    first = run_backtest(spells.lazy(), STAGES, origins, FAST)
    assert first.recomputed == [o.date() for o in origins] and first.reused == []
    # Same inputs: nothing recomputed, the same table. Poison the kept forecasts to prove they are
    # read from the table, not recomputed.
    again = run_backtest(spells.lazy(), STAGES, origins, FAST, previous=first.rows)
    assert again.recomputed == [] and again.rows.equals(first.rows)
    poisoned = first.rows.with_columns(
        forecast_revenue=pl.when(pl.col("method") == "naive_unphased")
        .then(-1.0)
        .otherwise(pl.col("forecast_revenue"))
    )
    kept = run_backtest(spells.lazy(), STAGES, origins, FAST, previous=poisoned)
    assert (kept.rows.filter(pl.col("method") == "naive_unphased")["forecast_revenue"] == -1.0).all()
    # A corrected old extract: a deal first seen before the 4th origin gets another amount. The origins
    # from the 4th on are recomputed (and equal a run from scratch), the first three kept.
    deal = (
        spells.group_by("deal_id")
        .agg(pl.col("entered_at").min())
        .filter(pl.col("entered_at").is_between(origins[2], origins[3], closed="left"))
        .sort("deal_id")["deal_id"][0]
    )
    corrected = spells.with_columns(
        amount_reporting=pl.when(pl.col("deal_id") == deal)
        .then(pl.lit(250_000.0))
        .otherwise(pl.col("amount_reporting"))
    )
    update = run_backtest(corrected.lazy(), STAGES, origins, FAST, previous=first.rows)
    assert update.reused == [o.date() for o in origins[:3]]
    assert update.recomputed == [o.date() for o in origins[3:]]
    scratch = run_backtest(corrected.lazy(), STAGES, origins, FAST)
    assert update.rows.equals(scratch.rows)
    assert not update.rows.equals(first.rows)


def _history_of_today(spells: pl.DataFrame) -> pl.DataFrame:
    """An amount history with one row per deal, from its first spell on, at the spells' amount."""
    return spells.group_by("deal_id").agg(
        known_from=pl.col("entered_at").min(), amount_reporting=pl.col("amount_reporting").first()
    )


def test_backtest_values_deals_at_the_amount_known_at_each_origin(synthetic):
    spells, origins = _backtest_inputs(synthetic)
    history = _history_of_today(spells)
    forecast_columns = ["origin_date", "horizon_months", "business_line", "method", "forecast_revenue"]
    base = run_backtest(spells.lazy(), STAGES, origins, FAST, amounts=history)
    # A history that never changed gives the forecasts of today's amounts.
    plain = run_backtest(spells.lazy(), STAGES, origins, FAST)
    assert base.rows.select(forecast_columns).equals(plain.rows.select(forecast_columns))
    # A deal open at the 5th and 6th origins is re-priced between them. The amount it had is what the
    # first five saw; from the 6th on the forecast values it at the new amount, as a run on spells that
    # carried the new amount all along would at those origins.
    fifth, sixth = origins[4], origins[5]
    open_at = [
        set(open_deals_at(spells_known_at(spells.lazy(), o), o).collect()["deal_id"]) for o in (fifth, sixth)
    ]
    deal = sorted(open_at[0] & open_at[1])[0]
    repriced = pl.concat(
        [
            history,
            pl.DataFrame(
                {"deal_id": [deal], "known_from": [fifth + timedelta(days=3)], "amount_reporting": [5e6]}
            ),
        ],
        how="vertical_relaxed",
    )
    update = run_backtest(spells.lazy(), STAGES, origins, FAST, previous=base.rows, amounts=repriced)
    assert update.recomputed == [o.date() for o in origins[5:]]
    assert update.reused == [o.date() for o in origins[:5]]
    forecasts = update.rows.filter(pl.col("method") == "learned").select(forecast_columns)
    before = base.rows.filter(pl.col("method") == "learned").select(forecast_columns)
    early = pl.col("origin_date") < sixth.date()
    assert forecasts.filter(early).equals(before.filter(early))
    at_sixth = [
        f.filter(pl.col("origin_date") == sixth.date())["forecast_revenue"].sum() for f in (forecasts, before)
    ]
    assert at_sixth[0] > at_sixth[1]
    new_amount = spells.with_columns(
        amount_reporting=pl.when(pl.col("deal_id") == deal).then(5e6).otherwise(pl.col("amount_reporting"))
    )
    today = run_backtest(new_amount.lazy(), STAGES, origins, FAST).rows.filter(pl.col("method") == "learned")
    late = pl.col("origin_date") >= sixth.date()
    assert forecasts.filter(late).equals(today.select(forecast_columns).filter(late))
    assert update.rows.equals(run_backtest(spells.lazy(), STAGES, origins, FAST, amounts=repriced).rows)
    # A change the CRM shows after the last origin (a daily extract re-pricing an open deal) recomputes
    # nothing, where today's amounts would have recomputed every origin that saw the deal.
    after_last = pl.concat(
        [
            history,
            pl.DataFrame(
                {"deal_id": [deal], "known_from": [datetime(2026, 1, 1)], "amount_reporting": [7e6]}
            ),
        ],
        how="vertical_relaxed",
    )
    daily = run_backtest(spells.lazy(), STAGES, origins, FAST, previous=base.rows, amounts=after_last)
    assert daily.recomputed == [] and daily.rows.equals(base.rows)


def test_amount_known_at_an_origin_is_the_latest_before_it_else_the_first():
    amounts = pl.DataFrame(
        {
            "deal_id": ["d1", "d1", "d1", "d2"],
            "known_from": [
                datetime(2025, 1, 10),
                datetime(2025, 3, 1),
                datetime(2025, 3, 5),
                datetime(2025, 6, 1),
            ],
            "amount_reporting": [100.0, 200.0, None, 50.0],
        }
    )

    def at(day: datetime) -> dict:
        return dict(amounts_known_at(amounts, day).collect().sort("deal_id").iter_rows())

    # Before any row: the first one (the oldest amount held); at the instant of a change: not yet.
    assert at(datetime(2025, 1, 1)) == {"d1": 100.0, "d2": 50.0}
    assert at(datetime(2025, 3, 1)) == {"d1": 100.0, "d2": 50.0}
    assert at(datetime(2025, 3, 2)) == {"d1": 200.0, "d2": 50.0}
    # The CRM dropped the amount: the deal has none (the forecast imputes one).
    assert at(datetime(2025, 4, 1)) == {"d1": None, "d2": 50.0}


_DAY = datetime(2025, 1, 1)


@settings(max_examples=60, deadline=None)
@given(
    histories=st.lists(
        st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.floats(1, 1e6))), max_size=4),
        min_size=1,
        max_size=8,
    ),
    spell_counts=st.lists(st.integers(1, 3), min_size=9, max_size=9),
    instants=st.lists(st.integers(-2, 33), min_size=1, max_size=6),
)
def test_amounts_at_origins_are_the_amounts_known_at_each_origin(histories, spell_counts, instants):
    # Deal i has the changes histories[i] (day offset, amount; a day once per deal); deal "d8" has no
    # history at all. Its spells, several per deal in a shuffled order, valued at each instant (some on
    # a change's very day) must carry amounts_known_at's amount, and nothing else may move.
    rows = [
        (f"d{i}", _DAY + timedelta(days=day), amount)
        for i, changes in enumerate(histories)
        for day, amount in dict(changes).items()
    ]
    amounts = pl.DataFrame(
        rows,
        schema={"deal_id": pl.String, "known_from": pl.Datetime("us"), "amount_reporting": pl.Float64},
        orient="row",
    )
    deals = [f"d{i}" for i in range(9)]
    ids = [d for d, n in zip(deals, spell_counts, strict=True) for _ in range(n)]
    spells = pl.DataFrame(
        {"deal_id": ids[::2] + ids[1::2], "stage": list(range(len(ids))), "amount_reporting": 1.0}
    )
    valued = AmountsAtOrigins(spells, amounts)
    for offset in instants:
        at = _DAY + timedelta(days=offset)
        got = valued.spells_at(at)
        expected = spells.drop("amount_reporting").join(
            amounts_known_at(amounts, at).collect(), on="deal_id", how="left", maintain_order="left"
        )
        assert got.select(expected.columns).equals(expected), at


def test_live_calibration_reads_only_closed_windows_and_tolerates_an_old_table(synthetic):
    spells, origins = _backtest_inputs(synthetic)
    rows = backtest(spells.lazy(), STAGES, origins, FAST)
    # At the last origin the calibration is the backtest's own; a forecast made later sees more windows.
    last = rows.filter((pl.col("origin_date") == origins[-1].date()) & (pl.col("method") == "learned"))
    at_last = calibration_at(rows, origins[-1].date())
    for h, sd in last.group_by("horizon_months").agg(pl.col("calibration_log_sd").first()).iter_rows():
        assert np.sqrt(at_last.get(h, 0.0)) == pytest.approx(sd)
    # A table written before the calibration existed (no simulated range) or none: the range as simulated.
    assert calibration_at(rows.drop("simulated_p10", "simulated_p90"), date(2025, 8, 20)) == {}
    assert calibration_at(None, date(2025, 8, 20)) == {}
