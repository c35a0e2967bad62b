"""Runs the whole simulation: from parameters and a seed to clean, versioned table frames."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from data.generator import billing, funnel, world
from data.generator.config import GeneratorConfig
from data.generator.timeutil import DAY, epoch

STREAMS = ("clients", "owners", "deals", "funnel", "activities", "billing", "fx", "defects")


@dataclass
class World:
    """The clean simulated tables (contract columns, `_known_at`, helper `_` columns) and ground truth."""

    tables: dict[str, pl.DataFrame]
    deals: funnel.Deals
    events: funnel.Events
    ground_truth: dict[str, Any]


def rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent random stream per part of the simulation, all derived from the seed."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child) for name, child in zip(STREAMS, children, strict=True)}


def crisis_window(cfg: GeneratorConfig) -> tuple[float, float]:
    """Crisis window as epoch seconds [first day 00:00, last day 23:59:59]."""
    p = cfg.params
    return float(epoch(date.fromisoformat(p.crisis_start))), float(
        epoch(date.fromisoformat(p.crisis_end)) + DAY - 1
    )


def simulate(
    cfg: GeneratorConfig,
    rng: dict[str, np.random.Generator],
    tick: Any,
    products: billing.Products | None = None,
) -> World:
    """Simulate the clean world; `tick(label)` advances the progress bar.

    `products`: a product catalogue to use instead of drawing one from `rng["billing"]` (shards of
    one world share theirs).
    """
    p = cfg.params
    start, end = cfg.start_date, cfg.end_date
    horizon = float(epoch(end + timedelta(days=1)) - 1)
    crisis = crisis_window(cfg)

    catalogue = world.stage_catalogue(p, start, end)
    owners = world.owners(p, cfg.scale, rng["owners"], start, end)
    first_owner = owners.unique("owner_id", keep="first", maintain_order=True)
    owner_ids = first_owner["owner_id"]
    base = world.clients(p, cfg.scale, rng["clients"])
    client_ids = base.frame["client_id"]
    tick("clients and owners")

    deals = funnel.create_deals(
        p, cfg.scale, base, first_owner["_line"].to_numpy(), rng["deals"], start, end, crisis
    )
    events, spells = funnel.run_funnel(p, deals, base.effort_sink, rng["funnel"], horizon, crisis)
    tick("funnel")
    acts = funnel.activities(
        p,
        deals,
        spells,
        first_owner["_effort"].to_numpy(),
        base.effort_sink,
        client_ids,
        owner_ids,
        horizon,
        rng["activities"],
    )
    tick("activities")

    fx = world.fx_rates(p, start, end, rng["fx"])
    ccys = world.currencies(p)
    fx_matrix = np.stack([fx.filter(pl.col("currency") == c)["rate_to_reporting"].to_numpy() for c in ccys])
    bill, turnover = billing.bill(
        p,
        deals,
        billing.products(p, rng["billing"]) if products is None else products,
        fx_matrix,
        start,
        end,
        crisis,
        client_ids,
        rng["billing"],
    )
    targets = billing.targets(p, turnover, end, cfg.dump_date, rng["billing"])
    tick("invoices")

    n_clients = len(client_ids)
    first_deal = np.full(n_clients, np.inf)
    np.minimum.at(first_deal, deals.client, deals.created)
    lead = rng["clients"].uniform(1, 90, n_clients) * DAY
    spread = (
        epoch(start) - 720 * DAY + rng["clients"].random(n_clients) * (horizon - epoch(start) + 720 * DAY)
    )
    created = np.floor(np.where(np.isfinite(first_deal), first_deal - lead, spread))
    clients = world.client_versions(p, base, created, horizon, rng["clients"])
    deal_rows = funnel.deal_versions(
        p, deals, events, bill.won_amount, client_ids, owner_ids, ccys, rng["deals"]
    )
    history = funnel.events_frame(p, deals, events, owner_ids)
    tick("versions")
    tables = {
        "clients": clients,
        "owners": owners.drop("_line", "_effort"),
        "stage_catalogue": catalogue,
        "deals": deal_rows,
        "deal_stage_history": history,
        "activities": acts,
        "invoices": bill.invoices,
        "invoice_lines": bill.lines,
        "fx_rates": fx,
        "targets": targets,
    }
    ground_truth = {
        "effort_sink_clients": client_ids.filter(pl.Series(base.effort_sink)).to_list(),
        "owner_effort_per_deal": dict(
            zip(owner_ids.to_list(), np.round(first_owner["_effort"].to_numpy(), 4).tolist(), strict=True)
        ),
        # Rounded: a linear solve's last bits differ between CPUs (LAPACK kernels), and the manifest
        # must be the same bytes on every machine.
        "expected_reach": {
            pipe.business_line: {
                s.name: [round(r, 12) for r in p.expected_reach(pipe.business_line, s.name)]
                for s in p.segments
            }
            for pipe in p.pipelines
        },
        "median_stage_days": {
            pipe.business_line: {s.name: list(p.median_days(pipe.business_line, s.name)) for s in p.segments}
            for pipe in p.pipelines
        },
    }
    return World(tables, deals, events, ground_truth)
