"""Deals, their stage-change events and the sales activities attached to them.

The funnel is simulated for all deals at once: each loop iteration moves every still-active deal out
of its current stage (advance, skip, backward move, loss, reopen), so the loop runs over transitions,
never over deals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from data.generator.params import BUSINESS_LINES, CHANNELS, Params
from data.generator.timeutil import DAY, epoch, ids, labels, to_date, to_timestamp
from data.generator.world import Clients

WON, LOST = 90, 91
OPEN_STATUS, WON_STATUS, LOST_STATUS = 0, 1, 2
_MAX_TRANSITIONS = 200
_ACTIVITY_TYPES = ("call", "meeting", "email", "task")


@dataclass
class Deals:
    """One entry per deal (codes and epoch seconds), in deal-id order."""

    client: np.ndarray
    line: np.ndarray
    segment: np.ndarray
    industry: np.ndarray
    owner: np.ndarray
    channel: np.ndarray
    currency: np.ndarray
    created: np.ndarray
    entry: np.ndarray
    budget: np.ndarray
    """List value of the deal in EUR (lognormal per line x segment)."""
    status: np.ndarray | None = None
    closed_at: np.ndarray | None = None
    reopened: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.client)


@dataclass
class Events:
    """Stage-change events (deal index, stage code, epoch seconds), sorted by deal then time."""

    deal: np.ndarray
    stage: np.ndarray
    time: np.ndarray


@dataclass
class Spells:
    """Stays of deals in open stages (end censored at the horizon), for the activity model."""

    deal: np.ndarray
    stage: np.ndarray
    start: np.ndarray
    end: np.ndarray


def daily_inflow(params: Params, start: date, end: date, crisis: tuple[float, float]) -> np.ndarray:
    """Relative lead inflow per day x industry: seasonality x trend x crisis effect x industry share."""
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1)
    months = days.astype("datetime64[M]").astype(int) % 12
    years = (days - days[0]).astype(float) / 365.25
    base = np.array(params.monthly_seasonality)[months] * (1.0 + params.yearly_trend) ** years
    secs = (days - np.datetime64("1970-01-01")).astype("timedelta64[D]").astype(np.int64) * 86_400.0
    in_crisis = (secs >= crisis[0]) & (secs <= crisis[1])
    shares = np.array([i.lead_share for i in params.industries])
    change = np.array([i.crisis_inflow_change for i in params.industries])
    return base[:, None] * shares[None, :] * np.where(in_crisis[:, None], 1.0 + change[None, :], 1.0)


def create_deals(
    params: Params,
    scale: float,
    clients: Clients,
    owner_line: np.ndarray,
    rng: np.random.Generator,
    start: date,
    end: date,
    crisis: tuple[float, float],
) -> Deals:
    """Deals created by a seasonal, trending lead inflow per industry, assigned to clients and owners."""
    weights = daily_inflow(params, start, end, crisis)
    expected = params.deals_per_sf * scale * weights / weights.sum()
    counts = rng.poisson(expected)
    day0 = epoch(start)
    client_parts, created_parts = [], []
    for ind in range(len(params.industries)):
        members = np.flatnonzero(clients.industry == ind)
        n_ind = counts[:, ind].sum()
        if members.size == 0 or n_ind == 0:
            continue
        p = clients.attractiveness[members]
        client_parts.append(rng.choice(members, n_ind, p=p / p.sum()))
        day_idx = np.repeat(np.arange(counts.shape[0]), counts[:, ind])
        created_parts.append(day0 + day_idx * DAY + (7 + 11 * rng.random(n_ind)) * 3600.0)
    client = np.concatenate(client_parts)
    created = np.floor(np.concatenate(created_parts))
    order = np.argsort(created, kind="stable")
    client, created = client[order], created[order]
    n = client.size
    segment = clients.segment[client]
    line_p = np.array(params.business_line_shares)
    line = rng.choice(len(line_p), n, p=line_p / line_p.sum())
    owner = np.empty(n, dtype=np.int64)
    for b in range(len(BUSINESS_LINES)):
        pool = np.flatnonzero(owner_line == b)
        mask = line == b
        owner[mask] = pool[rng.integers(0, pool.size, mask.sum())]
    channel_p = np.array([s.channel_shares for s in params.segments])
    channel_cum = np.cumsum(channel_p / channel_p.sum(axis=1, keepdims=True), axis=1)[segment]
    channel = np.minimum((rng.random(n)[:, None] > channel_cum).sum(axis=1), len(CHANNELS) - 1)
    entry2 = np.array([params.entry_stage2_share.get(c, 0.0) for c in CHANNELS])[channel]
    entry = (rng.random(n) < entry2).astype(np.int64)
    size = np.array([[params.deal_sizes[b][s.name] for s in params.segments] for b in BUSINESS_LINES])
    median, sigma = size[line, segment, 0], size[line, segment, 1]
    budget = median * np.exp(sigma * rng.normal(0.0, 1.0, n))
    return Deals(
        client,
        line,
        segment,
        clients.industry[client],
        owner,
        channel,
        clients.currency[client],
        created,
        entry,
        budget,
    )


def run_funnel(
    params: Params,
    deals: Deals,
    sink: np.ndarray,
    rng: np.random.Generator,
    horizon: float,
    crisis: tuple[float, float],
) -> tuple[Events, Spells]:
    """Move every deal through its pipeline until it closes or the horizon censors it."""
    n = len(deals)
    n_open = np.array([len(params.pipeline(b).open_stages) for b in BUSINESS_LINES])
    width = n_open.max()
    step = np.zeros((len(BUSINESS_LINES), len(params.segments), width))
    median = np.zeros_like(step)
    for b, bl in enumerate(BUSINESS_LINES):
        for s, seg in enumerate(params.segments):
            rates = params.step_rates[bl][seg.name]
            step[b, s, : len(rates)] = rates
            days = params.median_days(bl, seg.name)
            median[b, s, : len(days)] = np.array(days) * DAY
    win_change = np.array([i.crisis_win_change for i in params.industries])[deals.industry]
    crisis_factor = (1.0 + win_change) ** (1.0 / n_open[deals.line])
    stage = deals.entry.copy()
    t = deals.created.astype(float).copy()
    status = np.full(n, OPEN_STATUS)
    closed_at = np.full(n, np.nan)
    reopened = np.zeros(n, dtype=bool)
    ev = [(np.arange(n), stage.copy(), t.copy())]
    sp = []
    active = np.arange(n)
    for _ in range(_MAX_TRANSITIONS):
        if active.size == 0:
            break
        k = stage[active]
        b, s = deals.line[active], deals.segment[active]
        dur = np.maximum(
            median[b, s, k] * np.exp(params.stage_duration_sigma * rng.normal(0, 1, active.size)), 3600.0
        )
        t_next = np.floor(t[active] + dur)
        sp.append((active, k, t[active], np.minimum(t_next, horizon)))
        keep = t_next <= horizon
        a, k, t_next, b = active[keep], k[keep], t_next[keep], b[keep]
        last = k == n_open[b] - 1
        u = rng.random((4, a.size))
        back = (k >= 1) & (u[0] < params.backward_share)
        p = step[b, deals.segment[a], k]
        p = np.where((t_next >= crisis[0]) & (t_next <= crisis[1]), p * crisis_factor[a], p)
        p = np.where(last & sink[deals.client[a]], 0.0, p)
        adv = ~back & (u[1] < p)
        lost = ~back & ~adv
        won = adv & last
        skip = adv & ~last & (k + 2 <= n_open[b] - 1) & (u[2] < params.skip_share)
        new = np.where(back, k - 1, np.where(skip, k + 2, k + 1))
        new = np.where(won, WON, np.where(lost, LOST, new))
        ev.append((a, new, t_next))
        delay = np.maximum(
            np.floor(params.reopen_median_days * DAY * np.exp(0.5 * rng.normal(0, 1, a.size))), DAY
        )
        reopen = lost & (u[3] < params.reopen_share) & (t_next + delay <= horizon)
        ev.append((a[reopen], k[reopen], t_next[reopen] + delay[reopen]))
        status[a[won]] = WON_STATUS
        status[a[lost & ~reopen]] = LOST_STATUS
        closed_at[a[won | (lost & ~reopen)]] = t_next[won | (lost & ~reopen)]
        reopened[a[reopen]] = True
        moving = ~won & ~lost
        stage[a[moving]] = new[moving]
        t[a[moving]] = t_next[moving]
        stage[a[reopen]] = k[reopen]
        t[a[reopen]] = t_next[reopen] + delay[reopen]
        active = a[moving | reopen]
    deals.status, deals.closed_at, deals.reopened = status, closed_at, reopened
    e_deal = np.concatenate([e[0] for e in ev])
    e_stage = np.concatenate([e[1] for e in ev])
    e_time = np.concatenate([e[2] for e in ev]).astype(np.int64)
    order = np.lexsort((e_time, e_deal))
    events = Events(e_deal[order], e_stage[order], e_time[order])
    spells = Spells(*(np.concatenate([x[i] for x in sp]) for i in range(4)))
    return events, spells


def stage_labels(params: Params) -> np.ndarray:
    """Stage id per (business line, stage code)."""
    table = np.full((len(BUSINESS_LINES), LOST + 1), "", dtype=object)
    for b, bl in enumerate(BUSINESS_LINES):
        stages = params.pipeline(bl).open_stages
        table[b, : len(stages)] = stages
        table[b, WON], table[b, LOST] = "won", "lost"
    return table


def events_frame(params: Params, deals: Deals, events: Events, owner_ids: pl.Series) -> pl.DataFrame:
    """deal_stage_history rows (event ids follow deal then time order)."""
    line = deals.line[events.deal]
    return pl.DataFrame(
        {
            "event_id": ids("E", np.arange(1, events.deal.size + 1), 9),
            "deal_id": ids("D", events.deal + 1, 8),
            "pipeline_id": labels(BUSINESS_LINES, line),
            "stage_id": pl.Series(stage_labels(params)[line, events.stage], dtype=pl.String),
            "changed_at": to_timestamp(events.time),
            "changed_by_owner_id": owner_ids.gather(deals.owner[events.deal]),
            "_known_at": events.time,
            "_deal": events.deal,
            "_stage": events.stage,
        }
    )


def deal_versions(
    params: Params,
    deals: Deals,
    events: Events,
    won_amount: np.ndarray,
    client_ids: pl.Series,
    owner_ids: pl.Series,
    currency_names: tuple[str, ...],
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Deal rows: a version at creation, at every close (won or lost) and at every reopen."""
    n = len(deals)
    prev_deal = np.r_[-1, events.deal[:-1]]
    prev_stage = np.r_[-1, events.stage[:-1]]
    first = events.deal != prev_deal
    is_version = first | (events.stage >= WON) | (~first & (prev_stage == LOST))
    v_deal = events.deal[is_version]
    v_stage = events.stage[is_version]
    v_time = events.time[is_version]
    status = np.where(v_stage == WON, "won", np.where(v_stage == LOST, "lost", "open"))
    estimate = np.round(
        deals.budget * np.exp(rng.normal(0, 0.15, n)) * _price_factor(params, deals, currency_names), 2
    )
    known = rng.random(n) >= params.open_without_amount_share
    amount = np.where(status == "won", won_amount[v_deal], np.where(known[v_deal], estimate[v_deal], np.nan))
    reason_p = np.array(params.lost_reason_weights)
    reason = rng.choice(len(reason_p), v_deal.size, p=reason_p / reason_p.sum())
    cycle_days = np.array(
        [[sum(params.median_days(b, s.name)) for s in params.segments] for b in BUSINESS_LINES]
    )
    expected_close = deals.created + cycle_days[deals.line, deals.segment] * DAY * rng.uniform(0.7, 1.3, n)
    closed = status != "open"
    return pl.DataFrame(
        {
            "deal_id": ids("D", v_deal + 1, 8),
            "client_id": client_ids.gather(deals.client[v_deal]),
            "business_line": labels(BUSINESS_LINES, deals.line[v_deal]),
            "owner_id": owner_ids.gather(deals.owner[v_deal]),
            "source_channel": labels(CHANNELS, deals.channel[v_deal]),
            "amount": pl.Series(amount).fill_nan(None),
            "currency": labels(currency_names, deals.currency[v_deal]),
            "created_at": to_timestamp(deals.created[v_deal]),
            "expected_close_date": to_date(expected_close[v_deal]),
            "status": status,
            "lost_reason": pl.Series(np.asarray(params.lost_reasons, dtype=object)[reason]).set(
                pl.Series(status != "lost"), None
            ),
            "closed_at": to_timestamp(v_time).set(pl.Series(~closed), None),
            "is_deleted": False,
            "updated_at": to_timestamp(v_time),
            "_known_at": v_time,
            "_deal": v_deal,
        }
    )


def _price_factor(params: Params, deals: Deals, currency_names: tuple[str, ...]) -> np.ndarray:
    factor = np.array([params.list_price_factor[c] for c in currency_names])
    return factor[deals.currency]


def activities(
    params: Params,
    deals: Deals,
    spells: Spells,
    owner_effort: np.ndarray,
    sink: np.ndarray,
    client_ids: pl.Series,
    owner_ids: pl.Series,
    horizon: float,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """Calls, meetings, emails and tasks logged while deals are open, scaled by owner effort."""
    seg_mult = np.array([s.activity_multiplier for s in params.segments])
    d = spells.deal
    days = (spells.end - spells.start) / DAY
    rate = (
        params.activity_rate_per_day
        * days
        * owner_effort[deals.owner[d]]
        * seg_mult[deals.segment[d]]
        * np.where(sink[deals.client[d]], params.effort_sink_activity_multiplier, 1.0)
    )
    count = rng.poisson(rate)
    src = np.repeat(np.arange(d.size), count)
    n = src.size
    occurred = np.floor(spells.start[src] + rng.random(n) * (spells.end[src] - spells.start[src]))
    kind_p = np.array(params.activity_type_shares)
    kind = rng.choice(len(kind_p), n, p=kind_p / kind_p.sum())
    minutes = np.select(
        [kind == 0, kind == 1, kind == 3],
        [
            np.exp(np.log(12) + 0.6 * rng.normal(0, 1, n)),
            np.exp(np.log(45) + 0.5 * rng.normal(0, 1, n)),
            np.exp(np.log(20) + 0.7 * rng.normal(0, 1, n)),
        ],
        np.nan,
    )
    minutes = np.where((kind == 3) & (rng.random(n) < 0.5), np.nan, np.clip(np.round(minutes), 1, 1440))
    logged = np.minimum(occurred + np.floor(rng.uniform(60, 4 * 3600, n)), horizon).astype(np.int64)
    order = np.lexsort((d[src], occurred))
    deal = d[src][order]
    return pl.DataFrame(
        {
            "activity_id": ids("A", np.arange(1, n + 1), 9),
            "client_id": client_ids.gather(deals.client[deal]),
            "deal_id": ids("D", deal + 1, 8),
            "owner_id": owner_ids.gather(deals.owner[deal]),
            "activity_type": labels(_ACTIVITY_TYPES, kind[order]),
            "occurred_at": to_timestamp(occurred[order]),
            "duration_minutes": pl.Series(minutes[order]).fill_nan(None).cast(pl.Int64),
            "updated_at": to_timestamp(logged[order]),
            "_known_at": logged[order],
        }
    )
