"""The static side of the world: stage catalogue, owners, clients, products and FX rates.

Every builder returns a polars frame with the contract's columns plus `_known_at` (epoch seconds at
which the row version became visible in the source system) and, where later steps need them,
helper columns whose names start with `_`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from data.generator.params import BUSINESS_LINES, Params
from data.generator.timeutil import DAY, epoch, ids, labels, to_timestamp

TRICKY_CLIENT_NAMES = (
    'Baker, "The Bakers" & Sons Ltd',
    "x'); drop table raw.deals; --",
    "<script>alert(1)</script>",
    "Müller & Søn GmbH",
)
_NAME_HEADS = (
    "Nord",
    "Blue",
    "Alp",
    "Stone",
    "River",
    "Bright",
    "Iron",
    "Silver",
    "Oak",
    "Summit",
    "Harbor",
    "Vertex",
    "Prime",
    "Quantum",
    "Granite",
    "Cedar",
    "Falcon",
    "Atlas",
    "Nova",
    "Crest",
    "Lumen",
    "Delta",
    "Echo",
    "Sun",
    "Polar",
    "Red",
    "Green",
    "Swift",
    "Gold",
    "Frost",
)
_NAME_TAILS = (
    "wind",
    "peak",
    "field",
    "bridge",
    "stone",
    "gate",
    "works",
    "line",
    "point",
    "wave",
    "hill",
    "mark",
)
_NAME_SECTORS = (
    "Logistics",
    "Analytics",
    "Systems",
    "Foods",
    "Motors",
    "Health",
    "Energy",
    "Retail",
    "Builders",
    "Capital",
    "Hotels",
    "Solutions",
    "Industries",
    "Partners",
    "Technologies",
    "Group",
)
_LEGAL_FORMS = {
    "dach": ("GmbH", "AG", "GmbH & Co. KG"),
    "benelux": ("BV", "NV", "SA"),
    "france": ("SA", "SAS", "SARL"),
    "nordics": ("AB", "AS", "Oy"),
    "uk_ireland": ("Ltd", "plc", "LLP"),
    "north_america": ("Inc.", "LLC", "Corp."),
}
_FIRST_NAMES = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kara",
    "Liam",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Will",
    "Yara",
    "Zoe",
)
_LAST_NAMES = (
    "Schmidt",
    "Dupont",
    "Jansen",
    "Larsen",
    "Smith",
    "Brown",
    "Meyer",
    "Rossi",
    "Novak",
    "Berg",
    "Keller",
    "Moreau",
    "Visser",
    "Holm",
    "Taylor",
    "Walker",
    "Weber",
    "Fischer",
    "Laurent",
    "Olsen",
)
_REVENUE_BANDS = ("small", "medium", "large", "enterprise")


@dataclass
class Clients:
    """Client attributes as codes (for the simulation) and the rows of the clients table."""

    segment: np.ndarray
    industry: np.ndarray
    region: np.ndarray
    currency: np.ndarray
    attractiveness: np.ndarray
    effort_sink: np.ndarray
    frame: pl.DataFrame
    """Attribute columns without created_at / updated_at (set once deals are known)."""


def currencies(params: Params) -> tuple[str, ...]:
    """Currencies of the world, reporting currency first."""
    out = ["EUR"]
    for region in params.regions:
        if region.currency not in out:
            out.append(region.currency)
    return tuple(out)


def stage_catalogue(params: Params, start: date, end: date) -> pl.DataFrame:
    """Catalogue rows; one later version changes the SLA of hardware `quote` (3 days before end)."""
    rows = []
    written = epoch(start) - int(60 * DAY)
    for pipe in params.pipelines:
        n = len(pipe.open_stages)
        for k, stage in enumerate(pipe.open_stages):
            rows.append(
                (
                    pipe.business_line,
                    stage,
                    pipe.stage_names[k],
                    k + 1,
                    False,
                    False,
                    pipe.probabilities[k],
                    pipe.sla_days[k],
                    written,
                )
            )
        rows.append((pipe.business_line, "won", "Closed won", n + 1, True, False, 1.0, None, written))
        rows.append((pipe.business_line, "lost", "Closed lost", n + 2, False, True, 0.0, None, written))
    changed = epoch(end - timedelta(days=3)) + 9 * 3600
    for row in list(rows):
        if row[0] == "hardware" and row[1] == "quote":
            rows.append((*row[:7], 14, changed))
    frame = pl.DataFrame(
        rows,
        schema={
            "pipeline_id": pl.String,
            "stage_id": pl.String,
            "stage_name": pl.String,
            "stage_order": pl.Int64,
            "is_won": pl.Boolean,
            "is_lost": pl.Boolean,
            "probability": pl.Float64,
            "sla_days": pl.Int64,
            "_known_at": pl.Int64,
        },
        orient="row",
    )
    return frame.with_columns(
        is_deleted=pl.lit(False),
        updated_at=to_timestamp(frame["_known_at"].to_numpy()),
    )


def owners(params: Params, scale: float, rng: np.random.Generator, start: date, end: date) -> pl.DataFrame:
    """Owners per business line with their effort multiplier (`_effort`); one changes team late."""
    line: list[int] = []
    for b, base in enumerate(params.owners_per_line_sf1):
        n = max(params.min_owners_per_line, round(base * scale))
        line += [b] * n
    n = len(line)
    line_arr = np.array(line)
    effort = np.exp(rng.normal(0.0, 0.2, n))
    high = rng.random(n) < params.high_effort_owner_share
    effort = np.where(high, effort * params.high_effort_multiplier, effort)
    names = [
        f"{_FIRST_NAMES[i % len(_FIRST_NAMES)]} {_LAST_NAMES[(i * 7 + 3) % len(_LAST_NAMES)]}"
        for i in range(n)
    ]
    rank_in_line = np.concatenate([np.arange((line_arr == b).sum()) for b in range(len(BUSINESS_LINES))])
    written = epoch(start) - int(30 * DAY)
    frame = pl.DataFrame(
        {
            "owner_id": ids("O", np.arange(1, n + 1), 4),
            "owner_name": names,
            "team": [
                f"{BUSINESS_LINES[b]}_{'west' if r % 2 == 0 else 'east'}"
                for b, r in zip(line, rank_in_line, strict=True)
            ],
            "business_line": labels(BUSINESS_LINES, line_arr),
            "is_active": True,
            "_known_at": pl.Series([written] * n, dtype=pl.Int64),
            "_line": line_arr,
            "_effort": effort,
        }
    )
    # One owner (the first of services) moves to the other team five days before the end.
    moved_at = epoch(end - timedelta(days=5)) + 10 * 3600
    mover = (
        frame.filter(pl.col("_line") == 1)
        .head(1)
        .with_columns(team=pl.lit("services_key_accounts"), _known_at=pl.lit(moved_at, pl.Int64))
    )
    frame = pl.concat([frame, mover])
    return frame.with_columns(updated_at=to_timestamp(frame["_known_at"].to_numpy()))


def clients(params: Params, scale: float, rng: np.random.Generator) -> Clients:
    """Client accounts: segment, industry, use case, size, region and a realistic-ish name."""
    n = max(60, round(params.clients_per_sf * scale))
    seg_p = np.array([s.client_share for s in params.segments])
    ind_p = np.array([i.lead_share for i in params.industries])
    reg_p = np.array([r.share for r in params.regions])
    segment = rng.choice(len(seg_p), n, p=seg_p / seg_p.sum())
    industry = rng.choice(len(ind_p), n, p=ind_p / ind_p.sum())
    region = rng.choice(len(reg_p), n, p=reg_p / reg_p.sum())
    use_case = rng.integers(0, len(params.use_cases), n)
    ccy_names = currencies(params)
    currency = np.array([ccy_names.index(params.regions[r].currency) for r in range(len(reg_p))])[region]
    emp_median = np.array([s.employees_median for s in params.segments])[segment]
    employees = np.maximum(1, np.round(emp_median * np.exp(rng.normal(0, 0.7, n)))).astype(np.int64)
    band = np.digitize(employees * np.exp(rng.normal(0, 0.3, n)), [50, 500, 5000])
    heads = rng.integers(0, len(_NAME_HEADS), n)
    tails = rng.integers(0, len(_NAME_TAILS), n)
    sectors = rng.integers(0, len(_NAME_SECTORS), n)
    legal = rng.integers(0, 3, n)
    names = [
        f"{_NAME_HEADS[h]}{_NAME_TAILS[t]} {_NAME_SECTORS[s]} {_LEGAL_FORMS[params.regions[r].name][g]}"
        for h, t, s, r, g in zip(heads, tails, sectors, region, legal, strict=True)
    ]
    for pos, name in zip(
        rng.choice(n, len(TRICKY_CLIENT_NAMES), replace=False), TRICKY_CLIENT_NAMES, strict=True
    ):
        names[pos] = name
    attractiveness = rng.pareto(1.6, n) + 0.2
    effort_sink = rng.random(n) < params.effort_sink_client_share
    frame = pl.DataFrame(
        {
            "client_id": ids("C", np.arange(1, n + 1), 7),
            "client_name": names,
            "industry": labels([i.name for i in params.industries], industry),
            "segment": labels([s.name for s in params.segments], segment),
            "use_case": labels(params.use_cases, use_case),
            "employees": pl.Series(employees).set(pl.Series(rng.random(n) < 0.05), None),
            "revenue_band": labels(_REVENUE_BANDS, band),
            "region": labels([r.name for r in params.regions], region),
            "is_deleted": False,
            "merged_into_client_id": pl.Series([None] * n, dtype=pl.String),
        }
    )
    return Clients(segment, industry, region, currency, attractiveness, effort_sink, frame)


def client_versions(
    params: Params, base: Clients, created: np.ndarray, horizon: float, rng: np.random.Generator
) -> pl.DataFrame:
    """Client rows: one version at creation, a later size update for a share of clients."""
    first = base.frame.with_columns(_known_at=pl.Series(created.astype(np.int64)))
    n = len(created)
    upd = np.flatnonzero(rng.random(n) < params.client_update_share)
    when = created[upd] + rng.random(upd.size) * (horizon - created[upd])
    grown = np.round(np.exp(rng.normal(0.05, 0.15, upd.size)), 4)
    second = first[upd].with_columns(
        employees=(pl.col("employees").cast(pl.Float64) * pl.Series(grown)).round(0).cast(pl.Int64),
        _known_at=pl.Series(when.astype(np.int64)),
    )
    frame = pl.concat([first, second])
    return frame.with_columns(
        created_at=to_timestamp(created[np.concatenate([np.arange(n), upd])].astype(np.int64)),
        updated_at=to_timestamp(frame["_known_at"].to_numpy()),
    )


def fx_rates(params: Params, start: date, end: date, rng: np.random.Generator) -> pl.DataFrame:
    """A daily rate to EUR for every currency and day of history (mean-reverting log random walk)."""
    days = (end - start).days + 1
    day0 = epoch(start)
    frames = []
    for ccy in currencies(params):
        base = params.fx_start[ccy]
        if ccy == "EUR":
            rate = np.ones(days)
        else:
            shocks = rng.normal(0.0, params.fx_daily_sigma, days)
            level = np.zeros(days)
            for i in range(1, days):
                level[i] = 0.995 * level[i - 1] + shocks[i]
            rate = np.round(base * np.exp(level), 6)
        secs = day0 + np.arange(days, dtype=np.int64) * 86_400
        frames.append(
            pl.DataFrame(
                {
                    "rate_date": (pl.Series(secs // 86_400).cast(pl.Int32)).cast(pl.Date),
                    "currency": ccy,
                    "rate_to_reporting": rate,
                    "_known_at": secs + 6 * 3600,
                }
            )
        )
    return pl.concat(frames).sort("rate_date", "currency")
