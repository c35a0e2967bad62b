"""Cross-table integrity rules over the latest version of every key in `raw`.

Row rules (one row, one file) quarantine at load time. These rules need other tables (does the stage
exist, was the deal created before its event?), so they run after loading, over all extracts at once:
the result does not depend on the order partitions were loaded in. Each finding names the table, the
record key and the rule. `exclude` keeps the row out of the marts (dbt staging anti-joins on it);
`flag` lets it through, visibly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import duckdb

from data.contract import Contract


@dataclass(frozen=True)
class IntegrityRule:
    table_name: str
    rule: str
    action: str  # exclude | flag
    reason: str
    record_keys_sql: str  # SELECT yielding one column, record_key, over the latest_* views


@dataclass(frozen=True)
class Reference:
    """A column of one table that names a record of another."""

    table_name: str
    key_column: str
    column: str
    parent_table: str
    parent_key: str
    missing_rule: str
    missing_action: str
    missing_reason: str


def dangling_name(ref: Reference) -> str:
    """The temp relation of the reference's dangling rows (`create_latest_views`)."""
    return f"dangling_{ref.table_name}__{ref.column}"


def dangling_sql(ref: Reference) -> str:
    """The records whose reference names no parent in raw: record_key, parent_key."""
    return f"""SELECT c."{ref.key_column}" AS record_key, c."{ref.column}" AS parent_key
        FROM latest_{ref.table_name} c
        WHERE c."{ref.column}" IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM latest_{ref.parent_table} p WHERE p."{ref.parent_key}" = c."{ref.column}")"""


def reference_rules(ref: Reference) -> tuple[IntegrityRule, IntegrityRule]:
    """Two findings per reference, so a cascade is told apart from its cause: the parent never existed
    (`missing_rule`), or the parent is in quality.quarantine (`quarantined_<parent>_reference`). Both read
    the dangling rows, found once (`dangling_sql`: the anti-join over the child table is the costly part)."""
    dangling = dangling_name(ref)
    parent_key_json = f"json_extract_string(original_values, '$.{ref.parent_key}')"
    # Malformed lines have no parsed key: NULLs are left out, or NOT IN would match nothing.
    quarantined = f"""SELECT {parent_key_json} FROM quality.quarantine
        WHERE table_name = '{ref.parent_table}' AND {parent_key_json} IS NOT NULL"""
    entity = ref.parent_table.removesuffix("s")
    return (
        IntegrityRule(
            ref.table_name,
            ref.missing_rule,
            ref.missing_action,
            ref.missing_reason,
            f"SELECT record_key FROM {dangling} WHERE parent_key NOT IN ({quarantined})",
        ),
        IntegrityRule(
            ref.table_name,
            f"quarantined_{entity}_reference",
            ref.missing_action,
            f"the {entity} it names is in quality.quarantine, not in raw",
            f"SELECT record_key FROM {dangling} WHERE parent_key IN ({quarantined})",
        ),
    )


REFERENCES = (
    Reference(
        "deal_stage_history",
        "event_id",
        "deal_id",
        "deals",
        "deal_id",
        "unknown_deal",
        "exclude",
        "the deal is not among the deals",
    ),
    Reference(
        "activities",
        "activity_id",
        "deal_id",
        "deals",
        "deal_id",
        "unknown_deal",
        "exclude",
        "the deal is not among the deals",
    ),
    Reference(
        "deals",
        "deal_id",
        "client_id",
        "clients",
        "client_id",
        "unknown_client",
        "exclude",
        "the client is not among the clients",
    ),
    Reference(
        "invoices",
        "invoice_id",
        "client_id",
        "clients",
        "client_id",
        "unknown_client",
        "exclude",
        "the client is not among the clients",
    ),
    Reference(
        "invoices",
        "invoice_id",
        "original_invoice_id",
        "invoices",
        "invoice_id",
        "orphan_credit_note",
        "flag",
        "the credit note corrects an invoice that does not exist",
    ),
    Reference(
        "invoice_lines",
        "invoice_line_id",
        "invoice_id",
        "invoices",
        "invoice_id",
        "unknown_invoice",
        "exclude",
        "the invoice is not among the invoices",
    ),
)

RULES: tuple[IntegrityRule, ...] = (
    *(rule for ref in REFERENCES for rule in reference_rules(ref)),
    IntegrityRule(
        "deal_stage_history",
        "unknown_stage",
        "exclude",
        "the stage is not in the catalogue of its pipeline",
        """SELECT e.event_id FROM latest_deal_stage_history e
           ANTI JOIN latest_stage_catalogue s USING (pipeline_id, stage_id)""",
    ),
    IntegrityRule(
        "deal_stage_history",
        "deleted_stage_reference",
        "flag",
        "the stage was deleted from the catalogue",
        """SELECT e.event_id FROM latest_deal_stage_history e
           JOIN latest_stage_catalogue s USING (pipeline_id, stage_id) WHERE s.is_deleted""",
    ),
    IntegrityRule(
        "deal_stage_history",
        "event_before_deal_created",
        "exclude",
        "the event is before the deal was created",
        """SELECT e.event_id FROM latest_deal_stage_history e JOIN latest_deals d USING (deal_id)
           WHERE e.changed_at < d.created_at""",
    ),
    IntegrityRule(
        "deal_stage_history",
        "event_time_tie",
        "flag",
        "another event of the deal has the same time and another stage: their order is unknown",
        """SELECT e.event_id FROM latest_deal_stage_history e
           JOIN latest_deal_stage_history o
             ON o.deal_id = e.deal_id AND o.changed_at = e.changed_at AND o.event_id <> e.event_id
            AND o.stage_id <> e.stage_id""",
    ),
    IntegrityRule(
        "deals",
        "deleted_client_reference",
        "flag",
        "the client was deleted in the CRM",
        "SELECT d.deal_id FROM latest_deals d JOIN latest_clients c USING (client_id) WHERE c.is_deleted",
    ),
    IntegrityRule(
        "deals",
        "closed_without_history",
        "flag",
        "the deal is closed but has no stage events (first seen already closed)",
        """SELECT d.deal_id FROM latest_deals d WHERE d.status IN ('won', 'lost')
           AND NOT EXISTS (SELECT 1 FROM latest_deal_stage_history e WHERE e.deal_id = d.deal_id)""",
    ),
    IntegrityRule(
        "deals",
        "history_gap",
        "flag",
        "the deal is closed but its events never enter a matching terminal stage",
        """SELECT d.deal_id FROM latest_deals d WHERE d.status IN ('won', 'lost')
           AND EXISTS (SELECT 1 FROM latest_deal_stage_history e WHERE e.deal_id = d.deal_id)
           AND NOT EXISTS (
               SELECT 1 FROM latest_deal_stage_history e
               JOIN latest_stage_catalogue s USING (pipeline_id, stage_id)
               WHERE e.deal_id = d.deal_id
                 AND ((d.status = 'won' AND s.is_won) OR (d.status = 'lost' AND s.is_lost)))""",
    ),
    IntegrityRule(
        "stage_catalogue",
        "probability_percent_scale",
        "flag",
        "the pipeline gives probabilities on a 0-100 scale; they are divided by 100",
        """SELECT concat_ws('|', pipeline_id, stage_id) FROM latest_stage_catalogue
           WHERE pipeline_id IN (SELECT pipeline_id FROM latest_stage_catalogue
                                 GROUP BY pipeline_id HAVING max(probability) > 1)""",
    ),
    IntegrityRule(
        "invoices",
        "unknown_currency",
        "exclude",
        "no exchange rate exists for the currency, so the amounts cannot be converted",
        """SELECT i.invoice_id FROM latest_invoices i
           WHERE i.currency <> $reporting_currency
             AND i.currency NOT IN (SELECT DISTINCT currency FROM latest_fx_rates)""",
    ),
    IntegrityRule(
        "deals",
        "unknown_currency",
        "flag",
        "no exchange rate exists for the currency, so the amount cannot be converted",
        """SELECT d.deal_id FROM latest_deals d
           WHERE d.currency <> $reporting_currency
             AND d.currency NOT IN (SELECT DISTINCT currency FROM latest_fx_rates)""",
    ),
    IntegrityRule(
        "invoices",
        "duplicate_invoice_number",
        "exclude",
        "an earlier invoice already carries this invoice number",
        """SELECT invoice_id FROM (
               SELECT invoice_id, row_number() OVER (
                   PARTITION BY invoice_number ORDER BY issue_date, updated_at, invoice_id) AS nth
               FROM latest_invoices) WHERE nth > 1""",
    ),
)


def create_latest_views(
    conn: duckdb.DuckDBPyConnection, contract: Contract, materialize: bool = False
) -> None:
    """Temp views latest_<table>: the newest version of every key (extract date, then version column),
    and dangling_<table>__<column>: the rows of each reference that names no parent (`dangling_sql`).
    `materialize`: temp tables instead, holding only the columns the rules name (every rule reading a
    view would recompute its window over the whole raw table; all columns would cost memory at scale)."""
    rules_sql = " ".join(rule.record_keys_sql for rule in RULES) + " ".join(
        f"{ref.key_column} {ref.column} {ref.parent_key}" for ref in REFERENCES
    )
    for table in contract.tables.values():
        order = ["_extract_date DESC"]
        if table.version_column:
            order.append(f'"{table.version_column}" DESC NULLS LAST')
        order.append("_source_row DESC")
        keys = ", ".join(f'"{c}"' for c in table.primary_key)
        if materialize:
            named = [c for c in table.column_names if re.search(rf"\b{re.escape(c)}\b", rules_sql)]
            columns = ", ".join(f'"{c}"' for c in dict.fromkeys([*table.primary_key, *named]))
            kind = "TABLE"
        else:
            columns, kind = "*", "VIEW"
        conn.execute(
            f"CREATE OR REPLACE TEMP {kind} latest_{table.name} AS SELECT {columns} FROM raw.{table.name} "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {', '.join(order)}) = 1"
        )
    for ref in REFERENCES:
        conn.execute(f"CREATE OR REPLACE TEMP {kind} {dangling_name(ref)} AS {dangling_sql(ref)}")


def refresh_integrity_issues(
    conn: duckdb.DuckDBPyConnection, contract: Contract, detected_at: datetime
) -> dict[str, int]:
    """Recompute quality.integrity_issues from scratch; returns the count per `table.rule`."""
    create_latest_views(conn, contract, materialize=True)
    counts: dict[str, int] = {}
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute("DELETE FROM quality.integrity_issues")
        for rule in RULES:
            conn.execute(
                f"""INSERT INTO quality.integrity_issues
                    SELECT DISTINCT $table_name, record_key, $rule, $action, $reason, $detected_at
                    FROM ({rule.record_keys_sql}) AS found(record_key)""",
                {
                    "table_name": rule.table_name,
                    "rule": rule.rule,
                    "action": rule.action,
                    "reason": rule.reason,
                    "detected_at": detected_at,
                    **(
                        {"reporting_currency": contract.reporting_currency}
                        if "$reporting_currency" in rule.record_keys_sql
                        else {}
                    ),
                },
            )
        rows = conn.execute(
            "SELECT table_name || '.' || rule, count(*) FROM quality.integrity_issues GROUP BY ALL"
        ).fetchall()
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    finally:
        # Gone with the connection anyway; dropped now to free their memory and their names.
        for ref in REFERENCES:
            conn.execute(f"DROP TABLE IF EXISTS {dangling_name(ref)}")
        for table in contract.tables.values():
            conn.execute(f"DROP TABLE IF EXISTS latest_{table.name}")
    counts.update(dict(sorted(rows)))
    return counts
