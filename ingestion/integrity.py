"""Cross-table integrity rules over the latest version of every key in `raw`.

Row rules (one row, one file) quarantine at load time. These rules need other tables (does the stage
exist, was the deal created before its event?), so they run after loading, over all extracts at once:
the result does not depend on the order partitions were loaded in. Each finding names the table, the
record key and the rule. `exclude` keeps the row out of the marts (dbt staging anti-joins on it);
`flag` lets it through, visibly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import duckdb

from data.contract import Contract, Table


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


STATE_SCHEMA = "integrity_state"

LOADED_DATES_DDL = f"""CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.loaded_dates (
    table_name VARCHAR, _extract_date DATE, row_count BIGINT, first_loaded_at TIMESTAMP,
    last_loaded_at TIMESTAMP, source_row_sum HUGEINT)"""


def _latest_order(table: Table) -> str:
    order = ["_extract_date DESC"]
    if table.version_column:
        order.append(f'"{table.version_column}" DESC NULLS LAST')
    order.append("_source_row DESC")
    return ", ".join(order)


def _latest_sql(table: Table, columns: str, source: str) -> str:
    """The newest version of every key of `source` (raw rows of one table): extract date, then version
    column, then line in the file."""
    keys = ", ".join(f'"{c}"' for c in table.primary_key)
    return (
        f"SELECT {columns} FROM {source} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {_latest_order(table)}) = 1"
    )


# The columns the rules read beyond each table's key (`latest_<table>` holds the key, these and the
# extract date). Named here rather than found in the rules' text, which would also keep every column of
# that name in every table (updated_at everywhere): the kept copy is about 20M rows at SF10. A rule that
# reads a column missing here fails with DuckDB's "column not found" in the tests; adding it rebuilds the
# kept table on the next run.
RULE_COLUMNS: dict[str, tuple[str, ...]] = {
    "clients": ("is_deleted",),
    "stage_catalogue": ("is_won", "is_lost", "is_deleted", "probability"),
    "deals": ("client_id", "status", "created_at", "currency"),
    "deal_stage_history": ("deal_id", "pipeline_id", "stage_id", "changed_at"),
    "activities": ("deal_id",),
    "invoices": (
        "client_id",
        "original_invoice_id",
        "currency",
        "invoice_number",
        "issue_date",
        "updated_at",
    ),
    "invoice_lines": ("invoice_id",),
    "fx_rates": ("currency",),
}


def _rule_columns(table: Table) -> list[str]:
    """The key, the columns the rules read, and the extract date (which versions a reload replaces)."""
    return list(dict.fromkeys([*table.primary_key, *RULE_COLUMNS.get(table.name, ()), "_extract_date"]))


def create_latest_views(conn: duckdb.DuckDBPyConnection, contract: Contract) -> None:
    """Temp views latest_<table> over raw (every column, the newest version of every key) and
    dangling_<table>__<column> (`dangling_sql`), for inspecting a warehouse by hand."""
    for table in contract.tables.values():
        latest = _latest_sql(table, "*", f"raw.{table.name}")
        conn.execute(f"CREATE OR REPLACE TEMP VIEW latest_{table.name} AS {latest}")
    for ref in REFERENCES:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {dangling_name(ref)} AS {dangling_sql(ref)}")


def refresh_latest_tables(conn: duckdb.DuckDBPyConnection, contract: Contract) -> dict[str, int]:
    """Bring integrity_state.latest_<table> (the newest version of every key, the columns the rules read)
    up to date with raw; returns, per table, how many extract dates it re-read (-1: rebuilt whole).

    Ranking every version of every key is most of the rules' cost (a window over all of raw: about 5 of
    9 s at SF10, measured alone), and a day's extract changes few keys. Raw changes only a whole
    extract date at a time (a load replaces the date's rows), so each date's fingerprint (rows, load
    times, sum of line numbers) is kept in `loaded_dates`; where one differs, is new or is gone, only
    the keys with a row of that date, now in raw or as the kept newest version, are ranked again.
    Whatever the partition window of the run, and after a run that loaded and then failed. A table
    whose kept columns differ from what the rules need (a new contract or rule) is rebuilt."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
    conn.execute(LOADED_DATES_DDL)
    refreshed: dict[str, int] = {}
    for table in contract.tables.values():
        state = f"{STATE_SCHEMA}.latest_{table.name}"
        columns = _rule_columns(table)
        column_list = ", ".join(f'"{c}"' for c in columns)
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE loaded_now AS
                SELECT $table_name AS table_name, _extract_date, count(*) AS row_count,
                       min(_loaded_at) AS first_loaded_at, max(_loaded_at) AS last_loaded_at,
                       sum(_source_row)::HUGEINT AS source_row_sum
                FROM raw.{table.name} GROUP BY _extract_date""",
            {"table_name": table.name},
        )
        kept = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [STATE_SCHEMA, f"latest_{table.name}"],
            ).fetchall()
        ]
        if kept != columns:
            conn.execute(
                f"CREATE OR REPLACE TABLE {state} AS {_latest_sql(table, column_list, f'raw.{table.name}')}"
            )
            refreshed[table.name] = -1
        else:
            changed = [
                day
                for (day,) in conn.execute(
                    f"""SELECT DISTINCT _extract_date FROM (
                           (SELECT * FROM loaded_now
                            EXCEPT SELECT * FROM {STATE_SCHEMA}.loaded_dates WHERE table_name = $table_name)
                           UNION ALL
                           (SELECT * FROM {STATE_SCHEMA}.loaded_dates WHERE table_name = $table_name
                            EXCEPT SELECT * FROM loaded_now))""",
                    {"table_name": table.name},
                ).fetchall()
            ]
            if changed:
                _rerank_keys_of_dates(conn, table, state, column_list, changed)
            refreshed[table.name] = len(changed)
        conn.execute(f"DELETE FROM {STATE_SCHEMA}.loaded_dates WHERE table_name = ?", [table.name])
        conn.execute(f"INSERT INTO {STATE_SCHEMA}.loaded_dates SELECT * FROM loaded_now")
    conn.execute("DROP TABLE IF EXISTS loaded_now")
    return refreshed


def _rerank_keys_of_dates(
    conn: duckdb.DuckDBPyConnection, table: Table, state: str, column_list: str, dates: list[date]
) -> None:
    """Drop the kept versions of every key with a row of `dates` (in raw, or kept), rank those keys again."""
    keys = ", ".join(f'"{c}"' for c in table.primary_key)
    matches = " AND ".join(f'{state}."{c}" = touched_keys."{c}"' for c in table.primary_key)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE touched_keys AS
            SELECT {keys} FROM raw.{table.name} WHERE _extract_date IN ?
            UNION SELECT {keys} FROM {state} WHERE _extract_date IN ?""",
        [dates, dates],
    )
    conn.execute(f"DELETE FROM {state} USING touched_keys WHERE {matches}")
    touched_rows = f"(SELECT * FROM raw.{table.name} SEMI JOIN touched_keys USING ({keys}))"
    conn.execute(f"INSERT INTO {state} {_latest_sql(table, column_list, touched_rows)}")
    conn.execute("DROP TABLE touched_keys")


@dataclass(frozen=True)
class IntegrityRefresh:
    counts: dict[str, int]  # findings per `table.rule`
    dates_ranked: dict[str, int]  # per table, extract dates whose keys were ranked again (-1: rebuilt)


def refresh_integrity_issues(
    conn: duckdb.DuckDBPyConnection, contract: Contract, detected_at: datetime
) -> IntegrityRefresh:
    """Recompute quality.integrity_issues from scratch, over the newest version of every key (kept up to
    date incrementally: `refresh_latest_tables`). One transaction: a failure leaves the findings and the
    kept versions as they were."""
    counts: dict[str, int] = {}
    conn.execute("BEGIN TRANSACTION")
    try:
        dates_ranked = refresh_latest_tables(conn, contract)
        for table in contract.tables.values():
            kept = f"{STATE_SCHEMA}.latest_{table.name}"
            conn.execute(f"CREATE OR REPLACE TEMP VIEW latest_{table.name} AS SELECT * FROM {kept}")
        for ref in REFERENCES:
            # Materialized: several rules read each of them, and the anti-join is the costly part.
            conn.execute(f"CREATE OR REPLACE TEMP TABLE {dangling_name(ref)} AS {dangling_sql(ref)}")
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
            conn.execute(f"DROP VIEW IF EXISTS latest_{table.name}")
    counts.update(dict(sorted(rows)))
    return IntegrityRefresh(counts, dates_ranked)
