"""Two hand-written extracts of every raw table, small enough to compute every figure by hand.

Extract 2024-01-31 carries January; extract 2024-02-15 carries February plus corrections of January
rows: an event moved a day earlier, a deal deleted, a client deleted, an invoice moved to another
client. The raw tables are built from data/contract.yaml, as ingestion builds them.
"""

from __future__ import annotations

from datetime import date, datetime

import duckdb

from data.contract import load_contract

FIRST_EXTRACT = date(2024, 1, 31)
SECOND_EXTRACT = date(2024, 2, 15)
LINEAGE_COLUMNS = {
    "_extract_date": "DATE",
    "_source_file": "VARCHAR",
    "_source_row": "BIGINT",
    "_loaded_at": "TIMESTAMP",
}
INTEGRITY_ISSUES_DDL = """
    create table quality.integrity_issues (
        table_name varchar, record_key varchar, rule varchar, action varchar, reason varchar,
        detected_at timestamp
    )
"""


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def d(text: str) -> date:
    return date.fromisoformat(text)


def _stage(pipeline, stage, order, probability, sla, won=False, lost=False):
    return dict(
        pipeline_id=pipeline,
        stage_id=stage,
        stage_name=stage.title(),
        stage_order=order,
        is_won=won,
        is_lost=lost,
        probability=probability,
        sla_days=sla,
        is_deleted=False,
        updated_at=ts("2023-12-01 00:00"),
    )


def _client(client_id, segment, updated_at="2023-12-01 00:00", is_deleted=False):
    return dict(
        client_id=client_id,
        client_name=f"Client {client_id}",
        industry="manufacturing",
        segment=segment,
        use_case="production",
        employees=50,
        revenue_band="medium",
        region="north",
        is_deleted=is_deleted,
        merged_into_client_id=None,
        created_at=ts("2023-12-01 00:00"),
        updated_at=ts(updated_at),
    )


def _deal(
    deal_id, client_id, line, amount, currency, created_at, status="open", is_deleted=False, updated_at=None
):
    return dict(
        deal_id=deal_id,
        client_id=client_id,
        business_line=line,
        owner_id=f"O-{line}",
        source_channel="inbound",
        amount=amount,
        currency=currency,
        created_at=ts(created_at),
        expected_close_date=None,
        status=status,
        lost_reason=None,
        closed_at=None,
        is_deleted=is_deleted,
        updated_at=ts(updated_at or created_at),
    )


def _event(event_id, deal_id, line, stage, changed_at):
    return dict(
        event_id=event_id,
        deal_id=deal_id,
        pipeline_id=line,
        stage_id=stage,
        changed_at=ts(changed_at),
        changed_by_owner_id=None,
    )


def _invoice(invoice_id, client_id, issue_date, currency, credit_of=None, updated_at="2024-01-31 00:00"):
    return dict(
        invoice_id=invoice_id,
        invoice_number=f"N-{invoice_id}",
        client_id=client_id,
        deal_id=None,
        issue_date=d(issue_date),
        currency=currency,
        is_credit_note=credit_of is not None,
        original_invoice_id=credit_of,
        updated_at=ts(updated_at),
    )


def _line(line_id, invoice_id, quantity, unit_price, list_price, unit_cost):
    return dict(
        invoice_line_id=line_id,
        invoice_id=invoice_id,
        line_number=1,
        product_id="P1",
        product_category="parts",
        quantity=quantity,
        unit_price=unit_price,
        list_price=list_price,
        unit_cost=unit_cost,
        updated_at=ts("2024-01-31 00:00"),
    )


EXTRACTS: dict[date, dict[str, list[dict]]] = {
    FIRST_EXTRACT: {
        "clients": [_client("C1", "smb"), _client("C2", "enterprise"), _client("C3", "smb")],
        "owners": [
            dict(
                owner_id=f"O-{line}",
                owner_name=line,
                team="t",
                business_line=line,
                is_active=True,
                updated_at=ts("2023-12-01 00:00"),
            )
            for line in ("consulting", "software")
        ],
        # consulting is on the 0-100 probability scale, software on 0-1.
        "stage_catalogue": [
            _stage("consulting", "lead", 1, 10, 10),
            _stage("consulting", "meeting", 2, 30, 14),
            _stage("consulting", "proposal", 3, 60, 20),
            _stage("consulting", "won", 4, 100, None, won=True),
            _stage("consulting", "lost", 5, 0, None, lost=True),
            _stage("software", "lead", 1, 0.1, 10),
            _stage("software", "demo", 2, 0.5, 5),
            _stage("software", "won", 3, 1.0, None, won=True),
            _stage("software", "lost", 4, 0.0, None, lost=True),
        ],
        "deals": [
            _deal(
                "D1",
                "C1",
                "consulting",
                1000,
                "EUR",
                "2024-01-02 09:00",
                status="won",
                updated_at="2024-01-20 10:00",
            ),
            _deal(
                "D2",
                "C2",
                "consulting",
                2000,
                "USD",
                "2024-01-03 09:00",
                status="lost",
                updated_at="2024-01-15 09:00",
            ),
            _deal("D3", "C1", "software", 500, "EUR", "2024-01-04 09:00"),
            _deal("D5", "C1", "consulting", 700, "EUR", "2024-01-05 10:00"),
            _deal("D6", "C2", "consulting", 900, "EUR", "2024-01-06 10:00"),
        ],
        "deal_stage_history": [
            _event("E101", "D1", "consulting", "lead", "2024-01-02 09:00"),
            _event("E102", "D1", "consulting", "meeting", "2024-01-05 09:00"),
            _event("E103", "D1", "consulting", "proposal", "2024-01-10 09:00"),
            _event("E104", "D1", "consulting", "won", "2024-01-20 10:00"),
            # D2: skip, backward move, lost from a middle stage; reopened in February.
            _event("E201", "D2", "consulting", "lead", "2024-01-03 09:00"),
            _event("E202", "D2", "consulting", "proposal", "2024-01-08 09:00"),
            _event("E203", "D2", "consulting", "meeting", "2024-01-12 09:00"),
            _event("E204", "D2", "consulting", "lost", "2024-01-15 09:00"),
            # D3: a repeated event for the stage it is already in continues the spell.
            _event("E301", "D3", "software", "lead", "2024-01-04 09:00"),
            _event("E302", "D3", "software", "demo", "2024-01-06 09:00"),
            _event("E303", "D3", "software", "demo", "2024-01-07 09:00"),
            _event("E501", "D5", "consulting", "lead", "2024-01-05 10:00"),
            _event("E601", "D6", "consulting", "lead", "2024-01-06 10:00"),
        ],
        "activities": [
            dict(
                activity_id="A1",
                client_id="C1",
                deal_id="D1",
                owner_id="O-consulting",
                activity_type="call",
                occurred_at=ts("2024-01-03 10:00"),
                duration_minutes=30,
                updated_at=ts("2024-01-03 10:00"),
            ),
        ],
        "invoices": [
            _invoice("I1", "C1", "2024-01-15", "EUR"),
            _invoice("I2", "C1", "2024-01-20", "USD"),
            _invoice("CN1", "C1", "2024-01-25", "EUR", credit_of="I1"),
            _invoice("I4", "C2", "2024-01-05", "EUR"),
        ],
        "invoice_lines": [
            _line("L1", "I1", 10, 90, 100, 50),
            _line("L2", "I1", 5, 20, 20, 10),
            _line("L3", "I2", 1, 100, 125, 60),
            _line("L4", "CN1", -2, 90, 100, 50),
            _line("L6", "I4", 1, 10, 10, 5),
        ],
        # No USD rate on 2024-01-20: the invoice takes the latest earlier one (0.92 of 2024-01-03).
        "fx_rates": [
            dict(rate_date=d("2024-01-01"), currency="USD", rate_to_reporting=0.90),
            dict(rate_date=d("2024-01-03"), currency="USD", rate_to_reporting=0.92),
        ],
        "targets": [
            dict(
                period_start=d("2024-01-01"),
                period_end=d("2024-03-31"),
                business_line="consulting",
                segment="smb",
                revenue_target=10000,
            ),
        ],
    },
    SECOND_EXTRACT: {
        "clients": [_client("C3", "smb", updated_at="2024-02-10 00:00", is_deleted=True)],
        "deals": [
            _deal("D2", "C2", "consulting", 2000, "USD", "2024-01-03 09:00", updated_at="2024-02-05 09:00"),
            _deal("D4", "C3", "consulting", 300, "EUR", "2024-02-02 09:00"),
            _deal(
                "D5",
                "C1",
                "consulting",
                700,
                "EUR",
                "2024-01-05 10:00",
                is_deleted=True,
                updated_at="2024-02-01 00:00",
            ),
        ],
        "deal_stage_history": [
            # A correction: D1 entered proposal a day earlier than the first extract said.
            _event("E103", "D1", "consulting", "proposal", "2024-01-09 09:00"),
            _event("E205", "D2", "consulting", "meeting", "2024-02-01 09:00"),
            _event("E206", "D2", "consulting", "proposal", "2024-02-05 09:00"),
            _event("E401", "D4", "consulting", "lead", "2024-02-02 09:00"),
        ],
        "invoices": [
            _invoice("I3", "C2", "2024-02-03", "EUR", updated_at="2024-02-03 00:00"),
            # I4 was booked on the wrong client: C2's January empties.
            _invoice("I4", "C1", "2024-01-05", "EUR", updated_at="2024-02-10 00:00"),
        ],
        "invoice_lines": [_line("L5", "I3", 3, 50, 50, 30)],
        "activities": [
            # A1's duration corrected, and a new activity.
            dict(
                activity_id="A1",
                client_id="C1",
                deal_id="D1",
                owner_id="O-consulting",
                activity_type="call",
                occurred_at=ts("2024-01-03 10:00"),
                duration_minutes=45,
                updated_at=ts("2024-02-01 10:00"),
            ),
            dict(
                activity_id="A2",
                client_id="C2",
                deal_id="D2",
                owner_id="O-consulting",
                activity_type="meeting",
                occurred_at=ts("2024-02-05 10:00"),
                duration_minutes=60,
                updated_at=ts("2024-02-05 10:00"),
            ),
        ],
    },
}

# D6 references a client the CRM does not know: ingestion excludes it.
INTEGRITY_ISSUES = [
    dict(
        table_name="deals",
        record_key="D6",
        rule="unknown_client",
        action="exclude",
        reason="client not in the CRM",
        detected_at=ts("2024-01-31 01:00"),
    ),
]


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty raw.* tables shaped by the contract, plus an empty quality.integrity_issues."""
    con.execute("create schema if not exists raw")
    con.execute("create schema if not exists quality")
    for table in load_contract().tables.values():
        columns = [f"{c.name} {c.duckdb_type}" for c in table.columns]
        columns += [f"{name} {kind}" for name, kind in LINEAGE_COLUMNS.items()]
        con.execute(f"create table raw.{table.name} ({', '.join(columns)})")
    con.execute(INTEGRITY_ISSUES_DDL)


def load_extract(con: duckdb.DuckDBPyConnection, extract_date: date, tables: dict | None = None) -> None:
    """Append one extract's rows (or `tables`, rows per table, as that extract) to raw, with the lineage
    columns ingestion adds."""
    contract = load_contract()
    for table_name, rows in (EXTRACTS[extract_date] if tables is None else tables).items():
        names = contract.table(table_name).column_names
        for row_number, row in enumerate(rows, start=1):
            values = [row.get(name) for name in names]
            values += [
                extract_date,
                f"{extract_date}/{table_name}.csv",
                row_number,
                datetime.combine(extract_date, datetime.min.time()),
            ]
            placeholders = ", ".join("?" for _ in values)
            con.execute(f"insert into raw.{table_name} values ({placeholders})", values)


def load_integrity_issues(con: duckdb.DuckDBPyConnection) -> None:
    for issue in INTEGRITY_ISSUES:
        con.execute(
            "insert into quality.integrity_issues values (?, ?, ?, ?, ?, ?)",
            list(issue.values()),
        )
