"""Defect injection on the clean simulated tables.

Content defects (missing values, impossible dates, unknown references, deleted references, ...) are
applied to every version of the affected key, so the daily and the dump layouts carry the same final
rows. File defects (duplicate lines, unparsable values, wrong field counts) are returned as markers
for the writer, which applies them to the one file line that holds the key's final version: row-level
defects only pick keys whose versions all land in one extract folder of the daily layout.

Rows of different defect classes are disjoint, so each defect counts once and clean rows stay clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import polars as pl

from data.generator.config import Defect, GeneratorConfig
from data.generator.funnel import LOST
from data.generator.params import BUSINESS_LINES
from data.generator.timeutil import DAY, epoch, to_timestamp

INVALID_TOKENS = ("12,5O0", "1.234,56 EUR", "n/a", "9 9OO", "#VALUE!")
UNKNOWN_STAGE = "pilot"
UNKNOWN_CURRENCY = "CHF"
DELETED_STAGE = "demo"
CRM_TABLES = ("clients", "owners", "stage_catalogue", "deals", "deal_stage_history", "activities")


@dataclass
class FileMarkers:
    """Keys whose file line the writer duplicates, breaks (field dropped) or fills with a bad value."""

    duplicate: dict[str, list[str]] = field(default_factory=dict)
    malformed: dict[str, list[str]] = field(default_factory=dict)
    invalid: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    """table -> (column, {key: bad token})."""
    located: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(defect class, table) -> keys whose file position the manifest records."""


def is_csv(cfg: GeneratorConfig, table: str) -> bool:
    """Whether a table is written as CSV in the configured format."""
    return cfg.format == "csv" or (cfg.format == "mixed" and table in CRM_TABLES)


class _Picker:
    """Draws disjoint random members of a population (deals, activities, invoices, ...)."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.order = rng.permutation(n)
        self.used = np.zeros(n, dtype=bool)

    def take(self, eligible: np.ndarray, k: int) -> np.ndarray:
        ok = eligible[self.order] & ~self.used[self.order]
        chosen = self.order[ok][:k]
        self.used[chosen] = True
        return np.sort(chosen)


def _count(rate: float, n: int) -> int:
    return 0 if rate <= 0 or n == 0 else max(1, round(rate * n))


def _folder_day(known_at: pl.Expr, dump_day: int) -> pl.Expr:
    day = known_at // 86_400
    return pl.when(day <= dump_day).then(dump_day).otherwise(day)


def inject(
    tables: dict[str, pl.DataFrame],
    events_deal: np.ndarray,
    events_stage: np.ndarray,
    cfg: GeneratorConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, pl.DataFrame], list[Defect], FileMarkers]:
    """Apply content defects to `tables` (replaced in place, to free the clean frames) and return them,
    the manifest entries and the file markers."""
    rate = cfg.defect_rate
    t = tables
    out: list[Defect] = []
    marks = FileMarkers()
    dump_day = epoch(cfg.dump_date) // 86_400

    # Per-deal facts used to pick eligible deals.
    deals = t["deals"]
    n_deals = int(deals["_deal"].max()) + 1
    per_deal = (
        deals.with_columns(_folder=_folder_day(pl.col("_known_at"), dump_day))
        .sort("_deal", "_known_at")
        .group_by("_deal", maintain_order=True)
        .agg(
            single=pl.col("_folder").n_unique() == 1,
            status=pl.col("status").last(),
            has_amount=pl.col("amount").last().is_not_null(),
        )
    )
    idx = per_deal["_deal"].to_numpy()

    def deal_fact(col: str) -> np.ndarray:
        arr = np.zeros(n_deals, dtype=object)
        arr[idx] = per_deal[col].to_numpy()
        return arr

    single, status = deal_fact("single").astype(bool), deal_fact("status")
    has_amount = deal_fact("has_amount").astype(bool)
    n_events = np.bincount(events_deal, minlength=n_deals)
    reopened = np.zeros(n_deals, dtype=bool)
    reopened[events_deal[1:][(events_stage[:-1] == LOST) & (events_deal[1:] == events_deal[:-1])]] = True
    plain = ~reopened
    closed = (status == "won") | (status == "lost")
    picker = _Picker(n_deals, rng)
    deal_ids_all = deals.unique("_deal", keep="first", maintain_order=True).sort("_deal")
    deal_key = np.empty(n_deals, dtype=object)
    deal_key[deal_ids_all["_deal"].to_numpy()] = deal_ids_all["deal_id"].to_numpy()

    def keys_of(chosen: np.ndarray) -> list[str]:
        return [str(k) for k in deal_key[chosen]]

    k_deals = _count(rate, n_deals)
    n_ev = len(t["deal_stage_history"])
    k_events = _count(rate, n_ev)

    # deleted_client_reference: delete whole clients (with few deals each) until enough deals are hit.
    if k_deals:
        client_of_deal = deal_ids_all["client_id"].to_numpy()
        per_client = pl.DataFrame({"client_id": client_of_deal}).group_by("client_id").len().sort("client_id")
        small = per_client.filter(pl.col("len") <= max(1, k_deals // 2))
        order = rng.permutation(len(small))
        cum = np.cumsum(small["len"].to_numpy()[order])
        n_take = max(1, int(np.searchsorted(cum, k_deals)) + 1)
        gone = set(small["client_id"].to_numpy()[order][:n_take].tolist())
        hit = np.flatnonzero(np.isin(client_of_deal, sorted(gone)))
        picker.used[hit] = True
        latest = (
            t["clients"]
            .sort("_known_at")
            .unique("client_id", keep="last", maintain_order=True)
            .filter(pl.col("client_id").is_in(gone))
            .sort("client_id")
        )
        when = np.maximum(
            latest["_known_at"].to_numpy() + 3600, epoch(cfg.end_date) - rng.uniform(1, 60, len(latest)) * DAY
        ).astype(np.int64)
        deleted = latest.with_columns(
            is_deleted=pl.lit(True), _known_at=pl.Series(when), updated_at=to_timestamp(when)
        )
        t["clients"] = pl.concat([t["clients"], deleted])
        out.append(
            Defect(
                "deleted_client_reference",
                "deleted_client_reference",
                "deals",
                "cross_table",
                hit.size,
                keys_of(hit),
                related=sorted(gone),
            )
        )

    # Row-level deal defects: only deals whose versions all sit in one folder and never reopened.
    row_ok = single & plain
    deal_csv = is_csv(cfg, "deals")
    chosen: dict[str, np.ndarray] = {}
    for name, eligible, wanted in (
        ("duplicate_row", row_ok, True),
        ("invalid_value", row_ok & has_amount, deal_csv),
        ("missing_value", row_ok, True),
        ("close_before_create", row_ok & closed, True),
        ("won_without_amount", row_ok & (status == "won"), True),
    ):
        chosen[name] = picker.take(eligible, k_deals if wanted else 0)
    dup_keys = keys_of(chosen["duplicate_row"])
    marks.duplicate["deals"] = dup_keys
    out.append(Defect("duplicate_row", "duplicate_row", "deals", "row", len(dup_keys), dup_keys))
    inv_keys = keys_of(chosen["invalid_value"])
    marks.invalid["deals"] = ("amount", {k: str(rng.choice(INVALID_TOKENS)) for k in inv_keys})
    out.append(
        Defect("invalid_value", "invalid_value", "deals", "row", len(inv_keys), inv_keys, column="amount")
    )
    miss = keys_of(chosen["missing_value"])
    cbc = keys_of(chosen["close_before_create"])
    wwa = keys_of(chosen["won_without_amount"])
    shift = pl.duration(days=pl.col("_known_at") % 29 + 1)
    t["deals"] = t["deals"].with_columns(
        currency=pl.when(pl.col("deal_id").is_in(miss)).then(None).otherwise(pl.col("currency")),
        closed_at=pl.when(pl.col("deal_id").is_in(cbc) & pl.col("closed_at").is_not_null())
        .then(pl.col("created_at") - shift)
        .otherwise(pl.col("closed_at")),
        amount=pl.when(pl.col("deal_id").is_in(wwa) & (pl.col("status") == "won"))
        .then(None)
        .otherwise(pl.col("amount")),
    )
    out.append(Defect("missing_value", "missing_value", "deals", "row", len(miss), miss, column="currency"))
    out.append(Defect("close_before_create", "close_before_create", "deals", "row", len(cbc), cbc))
    out.append(Defect("won_without_amount", "won_without_amount", "deals", "row", len(wwa), wwa))
    for name, keys in (
        ("invalid_value", inv_keys),
        ("missing_value", miss),
        ("close_before_create", cbc),
        ("won_without_amount", wwa),
        ("duplicate_row", dup_keys),
    ):
        marks.located[(name, "deals")] = keys

    # Cross-table deal defects.
    unknown = picker.take(np.ones(n_deals, bool), k_deals)
    fake = {k: f"C{9_000_000 + i:07d}" for i, k in enumerate(keys_of(unknown))}
    t["deals"] = t["deals"].with_columns(
        client_id=pl.when(pl.col("deal_id").is_in(list(fake)))
        .then(pl.col("deal_id").replace(fake))
        .otherwise(pl.col("client_id"))
    )
    out.append(
        Defect(
            "unknown_client",
            "unknown_client",
            "deals",
            "cross_table",
            len(fake),
            list(fake),
            related=list(fake.values()),
        )
    )
    no_hist = picker.take(closed & plain, k_deals)
    gap = picker.take(closed & plain & (n_events >= 2), k_deals)
    ev = t["deal_stage_history"].with_columns(
        _pos=pl.int_range(pl.len()).over("_deal"), _n=pl.len().over("_deal")
    )
    drop = pl.col("_deal").is_in(no_hist.tolist()) | (
        pl.col("_deal").is_in(gap.tolist()) & (pl.col("_pos") == pl.col("_n") - 1)
    )
    out.append(
        Defect(
            "closed_without_history",
            "closed_without_history",
            "deals",
            "cross_table",
            no_hist.size,
            keys_of(no_hist),
        )
    )
    out.append(Defect("history_gap", "history_gap", "deals", "cross_table", gap.size, keys_of(gap)))

    # Event defects, each on its own deals.
    three = plain & (n_events >= 3)
    unk_stage = picker.take(three, k_events)
    before = picker.take(plain & (n_events >= 1), k_events)
    ties = picker.take(three, max(1, k_events // 2) if k_events else 0)
    sel = lambda deals_, pos: pl.col("_deal").is_in(deals_.tolist()) & (pl.col("_pos") == pos)  # noqa: E731
    first_time = pl.col("changed_at").first().over("_deal")
    ev = ev.with_columns(
        stage_id=pl.when(sel(unk_stage, 1)).then(pl.lit(UNKNOWN_STAGE)).otherwise(pl.col("stage_id")),
        changed_at=pl.when(sel(before, 0))
        .then(pl.col("changed_at") - pl.duration(seconds=(pl.col("_known_at") % 400_000 + 3600)))
        .when(sel(ties, 1))
        .then(first_time)
        .otherwise(pl.col("changed_at")),
    )
    ev_ids = lambda expr: ev.filter(expr)["event_id"].to_list()  # noqa: E731
    out.append(
        Defect(
            "unknown_stage",
            "unknown_stage",
            "deal_stage_history",
            "cross_table",
            unk_stage.size,
            ev_ids(sel(unk_stage, 1)),
        )
    )
    out.append(
        Defect(
            "event_before_deal_created",
            "event_before_deal_created",
            "deal_stage_history",
            "cross_table",
            before.size,
            ev_ids(sel(before, 0)),
        )
    )
    tie_ids = ev_ids(pl.col("_deal").is_in(ties.tolist()) & (pl.col("_pos") <= 1))
    out.append(
        Defect("event_time_tie", "event_time_tie", "deal_stage_history", "cross_table", len(tie_ids), tie_ids)
    )

    # deleted_stage_reference: a retired `demo` stage in the software pipeline, entered by a few deals
    # halfway through their `meeting` spell (before their next event).
    software = BUSINESS_LINES.index("software")
    meeting = 2
    has_meeting = np.zeros(n_deals, dtype=bool)
    nxt_ok = (events_stage[:-1] == meeting) & (events_deal[:-1] == events_deal[1:])
    has_meeting[events_deal[:-1][nxt_ok]] = True
    line_of = np.zeros(n_deals, dtype=np.int64)
    line_of[deal_ids_all["_deal"].to_numpy()] = [
        BUSINESS_LINES.index(b) for b in deal_ids_all["business_line"]
    ]
    demo_deals = picker.take(plain & has_meeting & (line_of == software), k_events)
    demo = (
        ev.with_columns(_next=pl.col("_known_at").shift(-1).over("_deal"))
        .filter(
            pl.col("_deal").is_in(demo_deals.tolist())
            & (pl.col("_stage") == meeting)
            & pl.col("_next").is_not_null()
        )
        .unique("_deal", keep="first", maintain_order=True)
    )
    mid = ((demo["_known_at"] + demo["_next"]) // 2).to_numpy()
    new_ids = [f"E{n_ev + i + 1:09d}" for i in range(len(demo))]
    demo = demo.with_columns(
        event_id=pl.Series(new_ids, dtype=pl.String),
        stage_id=pl.lit(DELETED_STAGE),
        changed_at=to_timestamp(mid),
        _known_at=pl.Series(mid),
    )
    ev = pl.concat([ev.filter(~drop), demo.drop("_next")]).drop("_pos", "_n")
    t["deal_stage_history"] = ev
    out.append(
        Defect(
            "deleted_stage_reference",
            "deleted_stage_reference",
            "deal_stage_history",
            "cross_table",
            len(new_ids),
            new_ids,
        )
    )
    cat = t["stage_catalogue"]
    if new_ids:
        retired = epoch(cfg.start_date + timedelta(days=200)) + 9 * 3600
        soft = pl.col("pipeline_id") == "software"
        cat = cat.with_columns(
            stage_order=pl.when(soft & (pl.col("stage_order") > meeting + 1))
            .then(pl.col("stage_order") + 1)
            .otherwise(pl.col("stage_order"))
        )
        row = (
            cat.filter(soft & (pl.col("stage_id") == "meeting"))
            .head(1)
            .with_columns(
                stage_id=pl.lit(DELETED_STAGE),
                stage_name=pl.lit("Product demo (retired)"),
                stage_order=pl.lit(meeting + 2, pl.Int64),
                probability=pl.lit(0.4),
                is_deleted=pl.lit(True),
                _known_at=pl.lit(retired, pl.Int64),
                updated_at=to_timestamp(np.array([retired])),
            )
        )
        cat = pl.concat([cat, row])
    percent = rate > 0
    if percent:
        cat = cat.with_columns(
            probability=pl.when(pl.col("pipeline_id") == "services")
            .then(pl.col("probability") * 100)
            .otherwise(pl.col("probability"))
        )
    pct_keys = (
        cat.filter(pl.col("pipeline_id") == "services")
        .unique(["pipeline_id", "stage_id"])
        .sort("stage_id")
        .select("pipeline_id", "stage_id")
        .rows()
        if percent
        else []
    )
    t["stage_catalogue"] = cat
    out.append(
        Defect(
            "probability_percent_scale",
            "probability_percent_scale",
            "stage_catalogue",
            "cross_table",
            len(pct_keys),
            [list(k) for k in pct_keys],
        )
    )

    _activities(t, cfg, rng, out, marks)
    _invoices(t, cfg, rng, out, marks)
    return t, out, marks


def _activities(
    t: dict[str, pl.DataFrame],
    cfg: GeneratorConfig,
    rng: np.random.Generator,
    out: list[Defect],
    marks: FileMarkers,
) -> None:
    acts = t["activities"]
    n = len(acts)
    k = _count(cfg.defect_rate, n)
    picker = _Picker(n, rng)
    every = np.ones(n, dtype=bool)
    ids = acts["activity_id"].to_numpy()
    dup = ids[picker.take(every, k)].tolist()
    bad = ids[picker.take(every, k if is_csv(cfg, "activities") else 0)].tolist()
    orphan = ids[picker.take(every, k)].tolist()
    fake = {a: f"D{90_000_000 + i:08d}" for i, a in enumerate(orphan)}
    if fake:
        t["activities"] = acts.with_columns(
            deal_id=pl.when(pl.col("activity_id").is_in(orphan))
            .then(pl.col("activity_id").replace(fake))
            .otherwise(pl.col("deal_id"))
        )
    marks.duplicate["activities"] = dup
    marks.malformed["activities"] = bad
    marks.located[("duplicate_row", "activities")] = dup
    marks.located[("malformed_row", "activities")] = bad
    out.append(Defect("duplicate_row", "duplicate_row", "activities", "row", len(dup), dup))
    out.append(Defect("malformed_row", "malformed_row", "activities", "row", len(bad), bad))
    out.append(
        Defect(
            "unknown_deal",
            "unknown_deal",
            "activities",
            "cross_table",
            len(orphan),
            orphan,
            related=list(fake.values()),
        )
    )


def _invoices(
    t: dict[str, pl.DataFrame],
    cfg: GeneratorConfig,
    rng: np.random.Generator,
    out: list[Defect],
    marks: FileMarkers,
) -> None:
    inv = t["invoices"]
    n = len(inv)
    k = _count(cfg.defect_rate, n)
    picker = _Picker(n, rng)
    cn = inv["is_credit_note"].to_numpy()
    ids = inv["invoice_id"].to_numpy()
    miss = ids[picker.take(~cn, k)].tolist()
    chf = ids[picker.take(~cn, k)].tolist()
    orphan = ids[picker.take(cn, k)].tolist()
    pair = np.sort(picker.take(~cn, 2 * k))
    first, later = pair[0::2], pair[1::2]
    first = first[: later.size]
    number = inv["invoice_number"].to_numpy().copy()
    number[later] = number[first]
    fake = {c: f"I{900_000_000 + i:09d}" for i, c in enumerate(orphan)}
    t["invoices"] = inv.with_columns(
        invoice_number=pl.Series(number, dtype=pl.String),
        currency=pl.when(pl.col("invoice_id").is_in(miss))
        .then(None)
        .when(pl.col("invoice_id").is_in(chf))
        .then(pl.lit(UNKNOWN_CURRENCY))
        .otherwise(pl.col("currency")),
        original_invoice_id=pl.when(pl.col("invoice_id").is_in(orphan))
        .then(pl.col("invoice_id").replace(fake))
        .otherwise(pl.col("original_invoice_id")),
    )
    marks.located[("missing_value", "invoices")] = miss
    out.append(
        Defect("missing_value", "missing_value", "invoices", "row", len(miss), miss, column="currency")
    )
    out.append(Defect("unknown_currency", "unknown_currency", "invoices", "cross_table", len(chf), chf))
    out.append(
        Defect(
            "orphan_credit_note",
            "orphan_credit_note",
            "invoices",
            "cross_table",
            len(orphan),
            orphan,
            related=list(fake.values()),
        )
    )
    out.append(
        Defect(
            "duplicate_invoice_number",
            "duplicate_invoice_number",
            "invoices",
            "cross_table",
            int(later.size),
            ids[later].tolist(),
            related=ids[first].tolist(),
        )
    )

    lines = t["invoice_lines"]
    k = _count(cfg.defect_rate, len(lines))
    picker = _Picker(len(lines), rng)
    line_ids = lines["invoice_line_id"].to_numpy()
    every = np.ones(len(lines), dtype=bool)
    dup = line_ids[picker.take(every, k)].tolist()
    csv_lines = is_csv(cfg, "invoice_lines")
    bad = line_ids[picker.take(every, k if csv_lines else 0)].tolist()
    marks.duplicate["invoice_lines"] = dup
    marks.invalid["invoice_lines"] = ("quantity", {key: str(rng.choice(INVALID_TOKENS)) for key in bad})
    marks.located[("duplicate_row", "invoice_lines")] = dup
    marks.located[("invalid_value", "invoice_lines")] = bad
    out.append(Defect("duplicate_row", "duplicate_row", "invoice_lines", "row", len(dup), dup))
    out.append(
        Defect("invalid_value", "invalid_value", "invoice_lines", "row", len(bad), bad, column="quantity")
    )
