from __future__ import annotations

from datetime import date

import duckdb
import pytest

from ingestion.integrity import refresh_integrity_issues
from tests.ingestion.conftest import LOADED_AT

DAY = date(2026, 11, 12)


def insert(conn, table: str, rows: list[dict], extract_date: date = DAY) -> None:
    for n, row in enumerate(rows, start=1):
        columns = [*row, "_extract_date", "_source_file", "_source_row", "_loaded_at"]
        values = [*row.values(), extract_date, f"{extract_date}/{table}.csv", n, LOADED_AT]
        placeholders = ", ".join("?" for _ in values)
        conn.execute(f"INSERT INTO raw.{table} ({', '.join(columns)}) VALUES ({placeholders})", values)


def stage(stage_id, order, won=False, lost=False, probability=0.5, deleted=False, pipeline="software"):
    return dict(
        pipeline_id=pipeline,
        stage_id=stage_id,
        stage_name=stage_id,
        stage_order=order,
        is_won=won,
        is_lost=lost,
        probability=probability,
        sla_days=10,
        is_deleted=deleted,
        updated_at="2026-01-01 00:00:00",
    )


def deal(deal_id, client_id="C1", status="open", created_at="2026-01-01 00:00:00", currency="EUR"):
    return dict(
        deal_id=deal_id,
        client_id=client_id,
        business_line="software",
        owner_id="O1",
        source_channel="inbound",
        amount=100,
        currency=currency,
        created_at=created_at,
        status=status,
        closed_at=None if status == "open" else "2026-03-01 00:00:00",
        is_deleted=False,
        updated_at="2026-01-01 00:00:00",
    )


def event(event_id, deal_id, stage_id, changed_at):
    return dict(
        event_id=event_id, deal_id=deal_id, pipeline_id="software", stage_id=stage_id, changed_at=changed_at
    )


def client(client_id, deleted=False):
    return dict(
        client_id=client_id,
        client_name=client_id,
        industry="retail",
        segment="smb",
        use_case="ops",
        region="eu",
        is_deleted=deleted,
        created_at="2025-01-01 00:00:00",
        updated_at="2025-01-01 00:00:00",
    )


def invoice(invoice_id, number, client_id="C1", currency="EUR", credit_of=None, issued="2026-02-01"):
    return dict(
        invoice_id=invoice_id,
        invoice_number=number,
        client_id=client_id,
        issue_date=issued,
        currency=currency,
        is_credit_note=credit_of is not None,
        original_invoice_id=credit_of,
        updated_at="2026-02-01 00:00:00",
    )


def findings(conn) -> set[tuple[str, str, str, str]]:
    return set(
        conn.execute("SELECT table_name, record_key, rule, action FROM quality.integrity_issues").fetchall()
    )


def test_cross_table_rules_find_exactly_the_broken_records(conn, contract):
    insert(conn, "clients", [client("C1"), client("C2", deleted=True)])
    insert(
        conn,
        "stage_catalogue",
        [
            stage("lead", 1),
            stage("proposal", 2),
            stage("demo", 3, deleted=True),
            stage("won", 4, won=True),
            stage("lost", 5, lost=True),
        ],
    )
    insert(
        conn,
        "deals",
        [
            deal("D1", status="won"),  # clean: lead -> proposal -> won
            deal("D2", client_id="C9"),  # unknown client
            deal("D3", client_id="C2"),  # client deleted in the CRM
            deal("D4", status="lost"),  # closed, no events at all
            deal("D5", status="won"),  # closed, but never entered a won stage
            deal("D6", created_at="2026-02-01 00:00:00"),
        ],
    )
    insert(
        conn,
        "deal_stage_history",
        [
            event("E1", "D1", "lead", "2026-01-01 00:00:00"),
            event("E2", "D1", "proposal", "2026-01-10 00:00:00"),
            event("E3", "D1", "won", "2026-02-01 00:00:00"),
            event("E4", "D5", "lead", "2026-01-02 00:00:00"),
            event("E5", "D6", "lead", "2026-01-15 00:00:00"),  # before D6 was created
            event("E6", "D3", "nowhere", "2026-01-02 00:00:00"),  # unknown stage
            event("E7", "D3", "demo", "2026-01-03 00:00:00"),  # deleted stage
            event("E8", "D99", "lead", "2026-01-03 00:00:00"),  # unknown deal
            event("E9", "D2", "lead", "2026-01-05 00:00:00"),  # E9 and E10: same time, other stages
            event("E10", "D2", "proposal", "2026-01-05 00:00:00"),
        ],
    )
    insert(conn, "fx_rates", [dict(rate_date="2026-02-01", currency="USD", rate_to_reporting=0.9)])
    insert(
        conn,
        "invoices",
        [
            invoice("I1", "2026-001"),
            invoice("I2", "2026-001", issued="2026-02-05"),  # number already used by I1
            invoice("I3", "2026-003", currency="CHF"),  # no rate for CHF
            invoice("I4", "2026-004", credit_of="I404"),  # credits an invoice that does not exist
            invoice("I5", "2026-005", currency="USD", credit_of="I1"),
        ],
    )

    counts = refresh_integrity_issues(conn, contract, LOADED_AT).counts

    assert findings(conn) == {
        ("deals", "D2", "unknown_client", "exclude"),
        ("deals", "D3", "deleted_client_reference", "flag"),
        ("deals", "D4", "closed_without_history", "flag"),
        ("deals", "D5", "history_gap", "flag"),
        ("deal_stage_history", "E5", "event_before_deal_created", "exclude"),
        ("deal_stage_history", "E6", "unknown_stage", "exclude"),
        ("deal_stage_history", "E7", "deleted_stage_reference", "flag"),
        ("deal_stage_history", "E8", "unknown_deal", "exclude"),
        ("deal_stage_history", "E9", "event_time_tie", "flag"),
        ("deal_stage_history", "E10", "event_time_tie", "flag"),
        ("invoices", "I2", "duplicate_invoice_number", "exclude"),
        ("invoices", "I3", "unknown_currency", "exclude"),
        ("invoices", "I4", "orphan_credit_note", "flag"),
    }
    assert counts["deal_stage_history.event_time_tie"] == 2


def test_findings_use_the_latest_version_and_are_recomputed_from_scratch(conn, contract):
    insert(conn, "clients", [client("C1")])
    insert(conn, "deals", [deal("D1", client_id="C9")])
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == {("deals", "D1", "unknown_client", "exclude")}

    # A corrected extract the next day fixes the client: the finding goes away.
    insert(conn, "deals", [deal("D1", client_id="C1")], extract_date=date(2026, 11, 13))
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == set()


def test_a_pipeline_on_a_percent_scale_is_flagged_row_by_row(conn, contract):
    insert(
        conn,
        "stage_catalogue",
        [
            stage("lead", 1, probability=10, pipeline="hardware"),
            stage("won", 2, won=True, probability=100, pipeline="hardware"),
            stage("lead", 1, probability=0.1),
        ],
    )
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == {
        ("stage_catalogue", "hardware|lead", "probability_percent_scale", "flag"),
        ("stage_catalogue", "hardware|won", "probability_percent_scale", "flag"),
    }


def test_a_reference_to_a_quarantined_record_is_told_apart_from_an_unknown_one(tmp_path, conn, contract):
    from ingestion.load import load_extract_table
    from tests.ingestion.conftest import deal as deal_row
    from tests.ingestion.conftest import write_csv

    land = tmp_path / "land"
    path = write_csv(
        land / DAY.isoformat() / "deals.csv", [deal_row(deal_id="D1"), deal_row(deal_id="D2", currency="")]
    )
    path.write_text(path.read_text() + "D3,broken\n")  # a malformed line: quarantined with no parsed key
    load_extract_table(conn, contract.table("deals"), land, DAY, LOADED_AT)
    insert(conn, "clients", [client("C1")])
    insert(
        conn,
        "deal_stage_history",
        [
            event("E1", "D1", "lead", "2026-01-02 00:00:00"),
            event("E2", "D2", "lead", "2026-01-02 00:00:00"),  # its deal is in quarantine
            event("E3", "D404", "lead", "2026-01-02 00:00:00"),  # its deal never existed
        ],
    )
    insert(conn, "stage_catalogue", [stage("lead", 1)])

    refresh_integrity_issues(conn, contract, LOADED_AT)

    assert findings(conn) == {
        ("deal_stage_history", "E2", "quarantined_deal_reference", "exclude"),
        ("deal_stage_history", "E3", "unknown_deal", "exclude"),
    }


def test_the_kept_newest_versions_follow_a_reloaded_day_as_a_rebuild_would(conn, contract):
    """Only the keys of changed extract dates are ranked again (integrity_state); a corrected reload of a
    day that drops a key's newest version must bring its previous version back, as recomputing all does."""
    day1, day2 = DAY, date(2026, 11, 13)
    insert(conn, "clients", [client("C1")])
    insert(conn, "deals", [deal("D1", client_id="C9"), deal("D2")], extract_date=day1)
    first = refresh_integrity_issues(conn, contract, LOADED_AT)
    assert set(first.dates_ranked.values()) == {-1}  # nothing kept yet: every table built whole
    assert findings(conn) == {("deals", "D1", "unknown_client", "exclude")}

    # The next day fixes D1's client and brings D3 with an unknown one.
    insert(conn, "deals", [deal("D1"), deal("D3", client_id="C9")], extract_date=day2)
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == {("deals", "D3", "unknown_client", "exclude")}

    # That day is reloaded, corrected: D1 is no longer in it, so its day-1 version is the newest again.
    conn.execute("DELETE FROM raw.deals WHERE _extract_date = ?", [day2])
    insert(conn, "deals", [deal("D3")], extract_date=day2)
    refresh = refresh_integrity_issues(conn, contract, LOADED_AT)
    assert {table: n for table, n in refresh.dates_ranked.items() if n} == {"deals": 1}
    assert findings(conn) == {("deals", "D1", "unknown_client", "exclude")}
    kept = conn.execute(
        "SELECT deal_id, client_id, _extract_date FROM integrity_state.latest_deals ORDER BY 1"
    )
    assert kept.fetchall() == [("D1", "C9", day1), ("D2", "C1", day1), ("D3", "C1", day2)]

    # Nothing kept: rebuilt from raw, the same findings.
    conn.execute("DROP SCHEMA integrity_state CASCADE")
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == {("deals", "D1", "unknown_client", "exclude")}


def test_a_failed_refresh_leaves_the_findings_and_the_kept_versions_as_they_were(conn, contract, monkeypatch):
    from ingestion import integrity

    insert(conn, "clients", [client("C1")])
    insert(conn, "deals", [deal("D1", client_id="C9")])
    refresh_integrity_issues(conn, contract, LOADED_AT)
    insert(conn, "deals", [deal("D1")], extract_date=date(2026, 11, 13))
    broken = integrity.IntegrityRule("deals", "broken", "flag", "a rule that fails", "SELECT no_such_column")
    monkeypatch.setattr(integrity, "RULES", (*integrity.RULES, broken))
    with pytest.raises(duckdb.BinderException, match="no_such_column"):
        refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == {("deals", "D1", "unknown_client", "exclude")}
    kept = conn.execute("SELECT client_id, _extract_date FROM integrity_state.latest_deals").fetchall()
    assert kept == [("C9", DAY)]

    # Once the rule is fixed, the day loaded in between is taken into account.
    monkeypatch.undo()
    refresh_integrity_issues(conn, contract, LOADED_AT)
    assert findings(conn) == set()
