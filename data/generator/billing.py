"""Invoices, invoice lines and credit notes of won deals, recurring billing, and revenue targets.

Discount depth follows the segment's price sensitivity and quantity responds to it with the segment's
price elasticity: quantity = base x (1 - discount) ** -elasticity x noise, so a regression of
log quantity on log(unit_price / list_price) within a segment recovers -elasticity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from data.generator.funnel import WON_STATUS, Deals
from data.generator.params import BUSINESS_LINES, Params
from data.generator.timeutil import DAY, epoch, ids, labels, to_date, to_timestamp
from data.generator.world import currencies


@dataclass
class Products:
    """The product catalogue: category code and EUR list price per product."""

    category: np.ndarray
    list_eur: np.ndarray
    product_ids: list[str]


@dataclass
class Billing:
    """Invoice and line rows plus the won amount of every deal (NaN unless won)."""

    invoices: pl.DataFrame
    lines: pl.DataFrame
    won_amount: np.ndarray


def products(params: Params, rng: np.random.Generator) -> Products:
    """`products_per_category` products per category with a log-uniform list price."""
    per = params.products_per_category
    cat = np.repeat(np.arange(len(params.categories)), per)
    lo = np.log([c.list_price_min for c in params.categories])[cat]
    hi = np.log([c.list_price_max for c in params.categories])[cat]
    price = np.round(np.exp(lo + rng.random(cat.size) * (hi - lo)), 2)
    names = [f"P-{params.categories[c].name[:3].upper()}-{i % per + 1:02d}" for i, c in enumerate(cat)]
    return Products(cat, price, names)


def _lines_for(
    params: Params,
    rng: np.random.Generator,
    catalogue: Products,
    deal: np.ndarray,
    value_eur: np.ndarray,
    invoice: np.ndarray,
    n_lines: np.ndarray,
    recurring: bool,
    deals: Deals,
    discount: np.ndarray,
    volume_factor: np.ndarray,
) -> dict[str, np.ndarray]:
    """Lines of a batch of invoices: product, quantity, prices and cost (line arrays, per invoice order)."""
    inv = np.repeat(np.arange(invoice.size), n_lines)
    line_deal = deal[inv]
    cat_index = {c.name: i for i, c in enumerate(params.categories)}
    category = np.empty(inv.size, dtype=np.int64)
    for b, bl in enumerate(BUSINESS_LINES):
        pipe = params.pipeline(bl)
        mask = deals.line[line_deal] == b
        if recurring:
            choices, p = pipe.recurring_categories, np.ones(len(pipe.recurring_categories))
        else:
            choices, p = pipe.categories, np.array(pipe.category_weights)
        category[mask] = np.array([cat_index[c] for c in choices])[
            rng.choice(len(choices), mask.sum(), p=p / p.sum())
        ]
    per = params.products_per_category
    product = category * per + rng.integers(0, per, inv.size)
    weight = rng.gamma(1.0, 1.0, inv.size)
    weight /= np.bincount(inv, weight)[inv]
    seg = deals.segment[line_deal]
    elasticity = np.array([s.price_elasticity for s in params.segments])[seg]
    d = discount[line_deal]
    q = (
        value_eur[inv]
        * weight
        / catalogue.list_eur[product]
        * (1.0 - d) ** (-elasticity)
        * np.exp(params.quantity_noise_sigma * rng.normal(0, 1, inv.size))
        * volume_factor[inv]
    )
    fractional = np.array([c.fractional_quantity for c in params.categories])[category]
    unit = np.where(fractional, 0.5, 1.0)
    q = np.maximum(np.round(q / unit) * unit, unit)
    ccy_factor = np.array([params.list_price_factor[c] for c in currencies(params)])
    list_price = np.round(catalogue.list_eur[product] * ccy_factor[deals.currency[line_deal]], 2)
    cost_ratio = np.array([c.cost_ratio for c in params.categories])[category]
    return {
        "invoice": invoice[inv],
        "line_number": (np.arange(inv.size) - np.r_[0, np.cumsum(n_lines)[:-1]][inv] + 1),
        "product": product,
        "category": category,
        "quantity": q,
        "unit_price": np.round(list_price * (1.0 - d), 2),
        "list_price": list_price,
        "unit_cost": np.round(list_price * cost_ratio * rng.uniform(0.85, 1.15, inv.size), 2),
    }


def _shift_quarter(d: date, quarters: int) -> date:
    months = d.year * 12 + d.month - 1 + 3 * quarters
    return date(months // 12, months % 12 + 1, 1)


def _quarter_start(d: date) -> date:
    return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)


def bill(
    params: Params,
    deals: Deals,
    catalogue: Products,
    fx: np.ndarray,
    start: date,
    end: date,
    crisis: tuple[float, float],
    client_ids: pl.Series,
    rng: np.random.Generator,
) -> tuple[Billing, pl.DataFrame]:
    """Invoices of won deals (initial, monthly recurring, credit notes) and the EUR turnover per line.

    `fx` holds EUR per unit, indexed [currency code, day since start]. The second frame returned
    (day, line, segment, net_eur) feeds the revenue targets.
    """
    n = len(deals)
    start_day, end_day = epoch(start) // 86_400, epoch(end) // 86_400
    mean_d = np.array([s.mean_discount for s in params.segments])[deals.segment]
    conc = params.discount_concentration
    discount = rng.beta(mean_d * conc, (1.0 - mean_d) * conc)
    won = np.flatnonzero(deals.status == WON_STATUS)
    lo, hi = params.invoice_delay_days
    init_day = (deals.closed_at[won] // DAY).astype(np.int64) + rng.integers(lo, hi + 1, won.size)
    n_init = 1 + np.minimum(rng.poisson(1.0, won.size), 4)
    init = _lines_for(
        params,
        rng,
        catalogue,
        won,
        deals.budget[won],
        np.arange(won.size),
        n_init,
        False,
        deals,
        discount,
        np.ones(won.size),
    )
    won_amount = np.full(n, np.nan)
    won_amount[won] = np.round(
        np.bincount(init["invoice"], np.round(init["quantity"] * init["unit_price"], 2), minlength=won.size),
        2,
    )
    # Monthly recurring invoices after the first one, shrinking in the crisis for falling industries.
    rec_share = np.array([params.pipeline(b).recurring_share for b in BUSINESS_LINES])[deals.line[won]]
    months = rng.integers(params.recurring_months[0], params.recurring_months[1] + 1, won.size)
    months = months * (rng.random(won.size) < rec_share)
    src = np.repeat(np.arange(won.size), months)
    r = np.arange(src.size) - np.repeat(np.cumsum(months) - months, months) + 1
    rec_day = init_day[src] + np.round(r * 30.44).astype(np.int64)
    src, rec_day = src[rec_day <= end_day], rec_day[rec_day <= end_day]
    rec_deal = won[src]
    in_crisis = (rec_day * DAY >= crisis[0]) & (rec_day * DAY <= crisis[1])
    turn = np.array([i.crisis_turnover_change for i in params.industries])[deals.industry[rec_deal]]
    rec = _lines_for(
        params,
        rng,
        catalogue,
        rec_deal,
        deals.budget[rec_deal] * params.recurring_value_share,
        won.size + np.arange(src.size),
        1 + np.minimum(rng.poisson(1.6, src.size), 5),
        True,
        deals,
        discount,
        np.where(in_crisis, 1.0 + turn, 1.0),
    )
    inv_deal = np.concatenate([won, rec_deal])
    inv_day = np.concatenate([init_day, rec_day])
    deal_known = np.concatenate([np.ones(won.size, bool), rng.random(src.size) >= 0.3])
    lines = {k: np.concatenate([init.pop(k), rec.pop(k)]) for k in list(init)}
    kept = inv_day <= end_day
    lines = {k: v[kept[lines["invoice"]]] for k, v in lines.items()}
    # Credit notes: a share of issued invoices, fully or partly credited some days later.
    n_inv = inv_deal.size
    cn_src = np.flatnonzero(kept & (rng.random(n_inv) < params.credit_note_share))
    cn_day = inv_day[cn_src] + rng.integers(5, 46, cn_src.size)
    cn_src, cn_day = cn_src[cn_day <= end_day], cn_day[cn_day <= end_day]
    cn_of = np.full(n_inv, -1)
    cn_of[cn_src] = n_inv + np.arange(cn_src.size)
    full = rng.random(n_inv) < params.full_credit_share
    pick = cn_of[lines["invoice"]] >= 0
    cn_lines = {k: v[pick] for k, v in lines.items()}
    unit = np.where(
        np.array([c.fractional_quantity for c in params.categories])[cn_lines["category"]], 0.5, 1.0
    )
    part = np.clip(
        np.round(cn_lines["quantity"] * rng.uniform(0.2, 0.8, unit.size) / unit) * unit,
        unit,
        cn_lines["quantity"],
    )
    cn_lines["quantity"] = -np.where(full[cn_lines["invoice"]], cn_lines["quantity"], part)
    cn_lines["invoice"] = cn_of[cn_lines["invoice"]]
    lines = {k: np.concatenate([lines[k], cn_lines.pop(k)]) for k in list(lines)}
    inv_deal = np.concatenate([inv_deal, inv_deal[cn_src]])
    inv_day = np.concatenate([inv_day, cn_day])
    deal_known = np.concatenate([deal_known, deal_known[cn_src]])
    original = np.concatenate([np.full(n_inv, -1), cn_src])
    present = np.concatenate([kept, np.ones(cn_src.size, bool)])
    is_cn = original >= 0
    # Number invoices in issue order: ids, legal numbers per year and kind, write times.
    written = inv_day * 86_400 + 6 * 3600 + rng.integers(0, 10 * 3600, inv_day.size)
    order = np.lexsort((np.arange(inv_day.size), inv_day))
    order = order[present[order]]
    rank = np.full(inv_day.size, -1)
    rank[order] = np.arange(order.size)
    invoice_ids = ids("I", rank[order] + 1, 9)
    years = to_date(inv_day[order] * 86_400).dt.year()
    header = pl.DataFrame(
        {
            "invoice_id": invoice_ids,
            "_year": years,
            "_cn": is_cn[order],
            "client_id": client_ids.gather(deals.client[inv_deal[order]]),
            "deal_id": ids("D", inv_deal[order] + 1, 8).set(pl.Series(~deal_known[order]), None),
            "issue_date": to_date(inv_day[order] * 86_400),
            "currency": labels(currencies(params), deals.currency[inv_deal[order]]),
            "is_credit_note": is_cn[order],
            "original_invoice_id": ids("I", rank[np.maximum(original[order], 0)] + 1, 9).set(
                pl.Series(~is_cn[order]), None
            ),
            "updated_at": to_timestamp(written[order]),
            "_known_at": written[order],
        }
    )
    header = header.with_columns(
        invoice_number=pl.when(pl.col("_cn")).then(pl.lit("CN-")).otherwise(pl.lit("INV-"))
        + pl.col("_year").cast(pl.String)
        + "-"
        + pl.int_range(1, pl.len() + 1).over("_year", "_cn").cast(pl.String).str.zfill(6)
    ).drop("_year", "_cn")
    line_order = np.lexsort((lines["line_number"], rank[lines["invoice"]]))
    lines = {k: v[line_order] for k, v in lines.items()}
    li = lines["invoice"]
    line_frame = pl.DataFrame(
        {
            "invoice_line_id": ids("L", np.arange(1, li.size + 1), 10),
            "invoice_id": ids("I", rank[li] + 1, 9),
            "line_number": lines["line_number"].astype(np.int64),
            "product_id": pl.Series(
                np.asarray(catalogue.product_ids, dtype=object)[lines["product"]], dtype=pl.String
            ),
            "product_category": labels([c.name for c in params.categories], lines["category"]),
            "quantity": lines["quantity"],
            "unit_price": lines["unit_price"],
            "list_price": lines["list_price"],
            "unit_cost": lines["unit_cost"],
            "updated_at": to_timestamp(written[li]),
            "_known_at": written[li],
        }
    )
    deal_of_line = inv_deal[li]
    day = inv_day[li]
    rate = fx[deals.currency[deal_of_line], day - start_day]
    turnover = pl.DataFrame(
        {
            "day": day,
            "line": deals.line[deal_of_line],
            "segment": deals.segment[deal_of_line],
            "net_eur": lines["quantity"] * lines["unit_price"] * rate,
        }
    )
    return Billing(header, line_frame, won_amount), turnover


def targets(
    params: Params, turnover: pl.DataFrame, end: date, dump: date, rng: np.random.Generator
) -> pl.DataFrame:
    """Quarterly revenue goals per line x segment: 4 past quarters, the current one and 4 ahead.

    Goal = run-rate (mean quarterly EUR turnover of the 4 full quarters before the dump date's
    quarter) x (1 + target_growth) ** years from that window x quarter seasonality x noise(+-5 %).
    The first quarter after the current one is revised down 5 % seven days before the end.
    """
    q_dump = _quarter_start(dump)
    lo, hi = _shift_quarter(q_dump, -4), q_dump
    lo_day, hi_day = epoch(lo) // 86_400, epoch(hi) // 86_400
    base = (
        turnover.filter((pl.col("day") >= lo_day) & (pl.col("day") < hi_day))
        .group_by("line", "segment")
        .agg((pl.col("net_eur").sum() / 4).alias("run_rate"))
    )
    run_rate = np.zeros((len(BUSINESS_LINES), len(params.segments)))
    run_rate[base["line"].to_numpy(), base["segment"].to_numpy()] = base["run_rate"].to_numpy()
    season = np.array(params.monthly_seasonality)
    mid = lo + (hi - lo) / 2
    q_end = _quarter_start(end)
    rows = []
    for offset in range(-4, 5):
        qs = _shift_quarter(q_end, offset)
        qe = _shift_quarter(qs, 1) - timedelta(days=1)
        factor = season[qs.month - 1 : qs.month + 2].mean() / season.mean()
        growth = (1.0 + params.target_growth) ** ((qs - mid).days / 365.25)
        for b, bl in enumerate(BUSINESS_LINES):
            for s, seg in enumerate(params.segments):
                goal = round(run_rate[b, s] * growth * factor * rng.uniform(0.95, 1.05), -2)
                rows.append((qs, qe, bl, seg.name, max(goal, 0.0), offset))
    frame = pl.DataFrame(
        rows,
        schema={
            "period_start": pl.Date,
            "period_end": pl.Date,
            "business_line": pl.String,
            "segment": pl.String,
            "revenue_target": pl.Float64,
            "_offset": pl.Int64,
        },
        orient="row",
    ).with_columns(_known_at=pl.lit(epoch(dump) + 6 * 3600, pl.Int64))
    revised = frame.filter(pl.col("_offset") == 1).with_columns(
        revenue_target=(pl.col("revenue_target") * 0.95 / 100).round(0) * 100,
        _known_at=pl.lit(epoch(end - timedelta(days=7)) + 8 * 3600, pl.Int64),
    )
    return pl.concat([frame, revised]).drop("_offset")
