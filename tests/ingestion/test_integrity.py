from __future__ import annotations

from datetime import date

import duckdb
import pytest

from ingestion.integrity import refresh_integrity_issues
from ingestion.warehouse import DuckDBSettings, connect, ensure_schemas
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


def quarantine(conn, table: str, key_column: str, key: str, extract_date: date) -> None:
    conn.execute(
        "INSERT INTO quality.quarantine VALUES (?, ?, ?, 1, 'not_null', 'amount', 'amount is null', NULL, ?, ?)",
        [table, extract_date, f"{extract_date}/{table}.csv", f'{{"{key_column}": "{key}"}}', LOADED_AT],
    )


def test_a_run_looks_again_only_at_what_changed_and_finds_what_recomputing_everything_finds(
    tmp_path, conn, contract
):
    """The rules look again only at the records a change can affect (their own new version, a parent's,
    a quarantined parent, another event of the deal, another invoice of the number, a currency's first
    rate). Each step below changes what a finding depends on without touching the record itself; a
    warehouse whose kept state is dropped before every run (so every record is looked at) is the
    reference."""
    with connect(DuckDBSettings(tmp_path / "reference.duckdb", memory_limit="1GB", threads=1)) as reference:
        ensure_schemas(reference, contract)
        both = (conn, reference)

        def load(table: str, rows: list[dict], day: date) -> None:
            for warehouse in both:
                insert(warehouse, table, rows, extract_date=day)

        def run(day_loaded_at):
            reference.execute("DROP SCHEMA IF EXISTS integrity_state CASCADE")
            expected = refresh_integrity_issues(reference, contract, day_loaded_at)
            refresh = refresh_integrity_issues(conn, contract, day_loaded_at)
            assert expected.full_reason is not None
            assert findings_with_reasons(conn) == findings_with_reasons(reference)
            return refresh

        day1, day2, day3 = DAY, date(2026, 11, 13), date(2026, 11, 14)
        load("clients", [client("C1"), client("C2")], day1)
        load(
            "stage_catalogue",
            [stage("lead", 1), stage("won", 2, won=True), stage("lost", 3, lost=True)],
            day1,
        )
        load(
            "deals",
            [
                deal("D1"),
                deal("D2"),
                deal("D3"),
                deal("D4", client_id="C2"),
                deal("D5", currency="GBP"),
                deal("D6", client_id="C9"),
            ],
            day1,
        )
        load(
            "deal_stage_history",
            [
                event("E1", "D1", "lead", "2026-01-05 00:00:00"),
                event("E2", "D2", "lead", "2026-01-05 00:00:00"),
                event("E3", "D2", "won", "2026-01-05 00:00:00"),  # a tie with E2
                event("E4", "D3", "lead", "2026-01-05 00:00:00"),
            ],
            day1,
        )
        load("activities", [dict(activity_id="A1", deal_id="D1"), dict(activity_id="A8", deal_id="D8")], day1)
        load(
            "invoices",
            [
                invoice("I1", "N1"),
                invoice("I2", "N2"),
                invoice("I3", "N1"),
                invoice("I4", "N4", currency="GBP"),
                # I7 repeats I6's number, and GBP's first rate brings I7 (not I6) back into view.
                invoice("I6", "N6"),
                invoice("I7", "N6", currency="GBP", issued="2026-02-05"),
            ],
            day1,
        )
        load("invoice_lines", [dict(invoice_line_id="L1", invoice_id="I9")], day1)
        load("fx_rates", [dict(rate_date="2026-02-01", currency="USD", rate_to_reporting=0.9)], day1)
        first = run(LOADED_AT)
        assert first.full_reason is not None
        assert ("deal_stage_history", "E2", "event_time_tie", "flag") in findings(conn)

        later = LOADED_AT.replace(day=28)
        # Day 2 changes every finding's inputs except the record itself.
        load("clients", [client("C2", deleted=True)], day2)  # D4's client is deleted
        # E1 is now before its deal was created; A8's deal arrives.
        load("deals", [deal("D1", created_at="2026-02-01 00:00:00"), deal("D8")], day2)
        load("deals", [deal("D3", status="lost")], day2)  # lost without entering a lost stage: a gap
        load(
            "deal_stage_history", [event("E3", "D3", "won", "2026-01-05 00:00:00")], day2
        )  # moves: D2 has no tie left
        load("invoices", [invoice("I1", "N2")], day2)  # I3 no longer repeats N1; I2's N2 now repeats I1's
        # GBP's first rate: I4 and D5 can be converted.
        load("fx_rates", [dict(rate_date="2026-11-13", currency="GBP", rate_to_reporting=1.1)], day2)
        for warehouse in both:
            # L1's invoice is now in quarantine: not unknown, quarantined.
            quarantine(warehouse, "invoices", "invoice_id", "I9", day2)
        second = run(later)
        assert second.full_reason is None
        # A1 and A8 (their deals changed); I1 (changed), I3 and I2 (its old and new number), I4 and I7
        # (GBP), I6 (I7's number).
        assert second.records_checked["activities"] == 2
        assert second.records_checked["invoices"] == 6
        assert {
            ("deal_stage_history", "E1", "event_before_deal_created", "exclude"),
            ("deals", "D4", "deleted_client_reference", "flag"),
            ("deals", "D3", "history_gap", "flag"),
            ("invoices", "I2", "duplicate_invoice_number", "exclude"),
            ("invoice_lines", "L1", "quarantined_invoice_reference", "exclude"),
        } <= findings(conn)
        assert not {
            ("deal_stage_history", "E2", "event_time_tie", "flag"),
            ("invoices", "I3", "duplicate_invoice_number", "exclude"),
            ("invoices", "I4", "unknown_currency", "exclude"),
            ("activities", "A8", "unknown_deal", "exclude"),
        } & findings(conn)
        # A finding that held all along keeps the time it was first detected; a new one has this run's.
        detected = dict(
            conn.execute(
                "SELECT record_key || ':' || rule, detected_at FROM quality.integrity_issues"
            ).fetchall()
        )
        assert detected["D6:unknown_client"] == detected["I7:duplicate_invoice_number"] == LOADED_AT
        assert detected["D4:deleted_client_reference"] == later

        # Day 2 is reloaded without its deals, rates and quarantined invoice: every finding comes back.
        for warehouse in both:
            for table in ("deals", "fx_rates"):
                warehouse.execute(f"DELETE FROM raw.{table} WHERE _extract_date = ?", [day2])
            warehouse.execute("DELETE FROM quality.quarantine WHERE extract_date = ?", [day2])
        third = run(later.replace(day=29))
        assert third.full_reason is None
        assert ("invoices", "I4", "unknown_currency", "exclude") in findings(conn)
        assert ("invoice_lines", "L1", "unknown_invoice", "exclude") in findings(conn)

        # A stage catalogue change looks at every record again.
        load("stage_catalogue", [stage("won", 2, won=True, deleted=True)], day3)
        fourth = run(later.replace(day=30))
        assert fourth.full_reason == "the stage catalogue changed"
        assert ("deal_stage_history", "E3", "deleted_stage_reference", "flag") in findings(conn)


def findings_with_reasons(conn) -> set[tuple[str, ...]]:
    return set(
        conn.execute(
            "SELECT table_name, record_key, rule, action, reason FROM quality.integrity_issues"
        ).fetchall()
    )


def test_a_changed_rule_looks_at_every_record_again(conn, contract, monkeypatch):
    from dataclasses import replace

    from ingestion import integrity

    insert(conn, "clients", [client("C1")])
    insert(conn, "deals", [deal("D1", client_id="C9")])
    refresh_integrity_issues(conn, contract, LOADED_AT)
    reworded = tuple(
        replace(rule, reason="no such client") if rule.rule == "unknown_client" else rule
        for rule in integrity.RULES
    )
    monkeypatch.setattr(integrity, "RULES", reworded)

    refresh = refresh_integrity_issues(conn, contract, LOADED_AT.replace(day=28))

    assert refresh.full_reason == "the rules changed"
    rows = conn.execute("SELECT record_key, reason, detected_at FROM quality.integrity_issues").fetchall()
    assert rows == [("D1", "no such client", LOADED_AT.replace(day=28))]
