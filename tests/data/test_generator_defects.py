"""The manifest's defect counts are what the files hold; every class at rate > 0, none at rate 0."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from data.contract import load_contract
from data.generator import GeneratorConfig, generate
from data.generator.reader import latest_per_key, read_all, read_file, table_files

EXPECTED_CLASSES = {
    ("duplicate_row", "deals"),
    ("duplicate_row", "activities"),
    ("duplicate_row", "invoice_lines"),
    ("invalid_value", "deals"),
    ("invalid_value", "invoice_lines"),
    ("malformed_row", "activities"),
    ("missing_value", "deals"),
    ("missing_value", "invoices"),
    ("close_before_create", "deals"),
    ("won_without_amount", "deals"),
    ("unknown_stage", "deal_stage_history"),
    ("unknown_client", "deals"),
    ("unknown_deal", "activities"),
    ("event_before_deal_created", "deal_stage_history"),
    ("event_time_tie", "deal_stage_history"),
    ("closed_without_history", "deals"),
    ("history_gap", "deals"),
    ("probability_percent_scale", "stage_catalogue"),
    ("unknown_currency", "invoices"),
    ("deleted_client_reference", "deals"),
    ("deleted_stage_reference", "deal_stage_history"),
    ("orphan_credit_note", "invoices"),
    ("duplicate_invoice_number", "invoices"),
}


def _latest(out: Path) -> dict[str, pl.DataFrame]:
    return {
        t: latest_per_key(read_all(out, t)[0], t)
        for t in (
            "clients",
            "stage_catalogue",
            "deals",
            "deal_stage_history",
            "activities",
            "invoices",
            "invoice_lines",
            "fx_rates",
        )
    }


def _not_number(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & pl.col(col).cast(pl.Float64, strict=False).is_null()


def observed(out: Path) -> dict[tuple[str, str], int]:
    """Count every defect class straight from the files."""
    t = _latest(out)
    deals, ev, cat = t["deals"], t["deal_stage_history"], t["stage_catalogue"]
    counts: dict[tuple[str, str], int] = {}
    for table in ("deals", "activities", "invoice_lines"):
        dup = 0
        spec = load_contract().table(table)
        for path in table_files(out, table):
            rows = read_file(path, spec)[0].drop("_row").hash_rows()
            dup += int((rows == rows.shift(1)).sum())
        counts[("duplicate_row", table)] = dup
    counts[("malformed_row", "activities")] = sum(map(len, read_all(out, "activities")[1].values()))
    counts[("invalid_value", "deals")] = deals.filter(_not_number("amount")).height
    counts[("invalid_value", "invoice_lines")] = t["invoice_lines"].filter(_not_number("quantity")).height
    counts[("missing_value", "deals")] = deals.filter(pl.col("currency").is_null()).height
    counts[("missing_value", "invoices")] = t["invoices"].filter(pl.col("currency").is_null()).height
    counts[("close_before_create", "deals")] = deals.filter(pl.col("closed_at") < pl.col("created_at")).height
    counts[("won_without_amount", "deals")] = deals.filter(
        (pl.col("status") == "won") & pl.col("amount").is_null()
    ).height
    known = cat.select("pipeline_id", "stage_id", "is_deleted")
    ev_cat = ev.join(known, on=["pipeline_id", "stage_id"], how="left")
    counts[("unknown_stage", "deal_stage_history")] = ev_cat.filter(pl.col("is_deleted").is_null()).height
    counts[("deleted_stage_reference", "deal_stage_history")] = ev_cat.filter(
        pl.col("is_deleted") == "true"
    ).height
    counts[("unknown_client", "deals")] = deals.filter(
        ~pl.col("client_id").is_in(t["clients"]["client_id"])
    ).height
    gone = t["clients"].filter(pl.col("is_deleted") == "true")["client_id"]
    counts[("deleted_client_reference", "deals")] = deals.filter(pl.col("client_id").is_in(gone)).height
    counts[("unknown_deal", "activities")] = (
        t["activities"]
        .filter(pl.col("deal_id").is_not_null() & ~pl.col("deal_id").is_in(deals["deal_id"]))
        .height
    )
    assert ev.filter(~pl.col("deal_id").is_in(deals["deal_id"])).height == 0
    with_created = ev.join(deals.select("deal_id", "created_at"), on="deal_id")
    counts[("event_before_deal_created", "deal_stage_history")] = with_created.filter(
        pl.col("changed_at") < pl.col("created_at")
    ).height
    counts[("event_time_tie", "deal_stage_history")] = ev.filter(
        (pl.len().over("deal_id", "changed_at") > 1)
        & (pl.col("stage_id").n_unique().over("deal_id", "changed_at") > 1)
    ).height
    closed = deals.filter(pl.col("status").is_in(["won", "lost"]))
    counts[("closed_without_history", "deals")] = closed.filter(
        ~pl.col("deal_id").is_in(ev["deal_id"])
    ).height
    terminal = ev.join(closed.select("deal_id", "status"), on="deal_id").filter(
        pl.col("stage_id") == pl.col("status")
    )
    counts[("history_gap", "deals")] = closed.filter(
        pl.col("deal_id").is_in(ev["deal_id"]) & ~pl.col("deal_id").is_in(terminal["deal_id"])
    ).height
    percent = cat.filter((pl.col("probability").cast(pl.Float64) > 1).any().over("pipeline_id"))
    counts[("probability_percent_scale", "stage_catalogue")] = percent.height
    inv = t["invoices"]
    counts[("unknown_currency", "invoices")] = inv.filter(
        pl.col("currency").is_not_null() & ~pl.col("currency").is_in(t["fx_rates"]["currency"])
    ).height
    counts[("orphan_credit_note", "invoices")] = inv.filter(
        (pl.col("is_credit_note") == "true") & ~pl.col("original_invoice_id").is_in(inv["invoice_id"])
    ).height
    counts[("duplicate_invoice_number", "invoices")] = inv.height - inv["invoice_number"].n_unique()
    return counts


def test_manifest_counts_match_the_files(daily_csv: tuple) -> None:
    out, manifest = daily_csv
    declared = {(d.defect_class, d.table): d.count for d in manifest.defects if d.rule != "none"}
    assert set(declared) == EXPECTED_CLASSES
    assert all(n >= 1 for n in declared.values()), declared
    assert observed(out) == declared
    for d in manifest.defects:
        assert d.rule == (d.defect_class if d.defect_class != "file_order_shuffled" else "none")
        assert d.rule == "none" or len(d.keys) == d.count


def test_defect_keys_are_disjoint(daily_csv: tuple) -> None:
    _, manifest = daily_csv
    seen: dict[str, set] = {}
    for d in manifest.defects:
        if d.rule == "none":
            continue
        table = d.table if d.table != "stage_catalogue" else "cat"
        keys = {str(k) for k in d.keys}
        assert not keys & seen.get(table, set()), d.defect_class
        seen.setdefault(table, set()).update(keys)


@pytest.mark.parametrize("fmt", ["csv", "mixed"])
def test_no_defects_at_rate_zero(fmt: str, tmp_path: Path) -> None:
    manifest = generate(GeneratorConfig(scale=0.01, seed=2, format=fmt, defect_rate=0.0), tmp_path)
    assert all(d.count == 0 for d in manifest.defects if d.rule != "none")
    found = observed(tmp_path)
    assert all(n == 0 for n in found.values()), {k: v for k, v in found.items() if v}
