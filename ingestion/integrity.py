"""Cross-table integrity rules over the latest version of every key in `raw`.

Row rules (one row, one file) quarantine at load time. These rules need other tables (does the stage
exist, was the deal created before its event?), so they run after loading, over all extracts at once:
the result does not depend on the order partitions were loaded in. Each finding names the table, the
record key and the rule. `exclude` keeps the row out of the marts (dbt staging anti-joins on it);
`flag` lets it through, visibly.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass
from datetime import date, datetime

import duckdb

from data.contract import Contract, Table


@dataclass(frozen=True)
class IntegrityRule:
    table_name: str
    rule: str
    action: str  # exclude | flag
    reason: str
    record_keys_sql: str
    """SELECT yielding one column, record_key, over the latest_* views. `{records}` stands for the rows of
    `table_name` the run looks at: all of `latest_<table_name>`, or only the keys of `affected_keys_sql`."""
    affected_keys_sql: str | None = None
    """SELECT of the keys of `table_name` whose finding may have changed since the last run, over the
    `delta_<table>` temp tables (old and new rows of every key whose kept columns changed: see
    `refresh_latest_tables`), `delta_quarantined` and the latest_* views. None: every record, every run."""
    group_column: str | None = None
    """A rule that compares the records of a group (same invoice number) with each other: the records
    looked at again are completed to whole groups of this column."""


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


def dangling_sql(ref: Reference, records: str | None = None) -> str:
    """The records (`records`: all of latest_<table> by default) whose reference names no parent in raw:
    record_key, parent_key."""
    return f"""SELECT c."{ref.key_column}" AS record_key, c."{ref.column}" AS parent_key
        FROM {records or f"latest_{ref.table_name}"} c
        WHERE c."{ref.column}" IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM latest_{ref.parent_table} p WHERE p."{ref.parent_key}" = c."{ref.column}")"""


STATE_SCHEMA = "integrity_state"
QUARANTINED_KEYS = f"{STATE_SCHEMA}.quarantined_keys"
"""The key of every quarantined row of a table a reference points at (table_name, parent_key)."""


def reference_rules(ref: Reference) -> tuple[IntegrityRule, IntegrityRule]:
    """Two findings per reference, so a cascade is told apart from its cause: the parent never existed
    (`missing_rule`), or the parent is in quality.quarantine (`quarantined_<parent>_reference`). Both read
    the dangling rows, found once (`dangling_sql`: the anti-join over the child table is the costly part)."""
    dangling = dangling_name(ref)
    # A child's findings change with its own row, its parent's row, or its parent's quarantine.
    affected = f"""SELECT "{ref.key_column}" FROM delta_{ref.table_name}
        UNION ALL SELECT "{ref.key_column}" FROM latest_{ref.table_name} WHERE "{ref.column}" IN (
            SELECT "{ref.parent_key}" FROM delta_{ref.parent_table}
            UNION ALL SELECT parent_key FROM delta_quarantined WHERE table_name = '{ref.parent_table}')"""
    # Kept up to date before the rules run (_refresh_quarantined_keys).
    quarantined = f"SELECT parent_key FROM {QUARANTINED_KEYS} WHERE table_name = '{ref.parent_table}'"
    entity = ref.parent_table.removesuffix("s")
    return (
        IntegrityRule(
            ref.table_name,
            ref.missing_rule,
            ref.missing_action,
            ref.missing_reason,
            f"SELECT record_key FROM {dangling} WHERE parent_key NOT IN ({quarantined})",
            affected,
        ),
        IntegrityRule(
            ref.table_name,
            f"quarantined_{entity}_reference",
            ref.missing_action,
            f"the {entity} it names is in quality.quarantine, not in raw",
            f"SELECT record_key FROM {dangling} WHERE parent_key IN ({quarantined})",
            affected,
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

# What a rule's affected keys are made of: the record's own changed keys, and the records of a changed
# deal (by its old and new values: an event moved to another deal changes both deals' findings).
CHANGED_EVENTS = "SELECT event_id FROM delta_deal_stage_history"
EVENTS_OF_CHANGED_DEALS = """SELECT event_id FROM latest_deal_stage_history WHERE deal_id IN (
    SELECT deal_id FROM delta_deal_stage_history)"""
DEALS_OF_CHANGED_EVENTS = "SELECT deal_id FROM delta_deal_stage_history"
# The currencies that gained their first rate or lost their last one. A day's new rates add keys of
# currencies that had rates already: no record is affected. (The fx rows kept are their key only, so
# delta_fx_rates holds keys added, now in latest_fx_rates, and keys gone, no longer there.)
RATE_CURRENCIES_FLIPPED = """SELECT currency FROM (SELECT DISTINCT currency FROM delta_fx_rates)
    WHERE (currency IN (SELECT currency FROM latest_fx_rates)) <> (
        currency IN (
            SELECT currency FROM latest_fx_rates ANTI JOIN delta_fx_rates USING (rate_date, currency))
        OR currency IN (
            SELECT currency FROM delta_fx_rates ANTI JOIN latest_fx_rates USING (rate_date, currency)))"""

RULES: tuple[IntegrityRule, ...] = (
    *(rule for ref in REFERENCES for rule in reference_rules(ref)),
    # The stage rules read the catalogue too: a change there re-checks everything (_full_refresh_reason).
    IntegrityRule(
        "deal_stage_history",
        "unknown_stage",
        "exclude",
        "the stage is not in the catalogue of its pipeline",
        """SELECT e.event_id FROM {records} e
           ANTI JOIN latest_stage_catalogue s USING (pipeline_id, stage_id)""",
        CHANGED_EVENTS,
    ),
    IntegrityRule(
        "deal_stage_history",
        "deleted_stage_reference",
        "flag",
        "the stage was deleted from the catalogue",
        """SELECT e.event_id FROM {records} e
           JOIN latest_stage_catalogue s USING (pipeline_id, stage_id) WHERE s.is_deleted""",
        CHANGED_EVENTS,
    ),
    IntegrityRule(
        "deal_stage_history",
        "event_before_deal_created",
        "exclude",
        "the event is before the deal was created",
        """SELECT e.event_id FROM {records} e JOIN latest_deals d USING (deal_id)
           WHERE e.changed_at < d.created_at""",
        f"""{CHANGED_EVENTS} UNION ALL SELECT event_id FROM latest_deal_stage_history
            WHERE deal_id IN (SELECT deal_id FROM delta_deals)""",
    ),
    IntegrityRule(
        "deal_stage_history",
        "event_time_tie",
        "flag",
        "another event of the deal has the same time and another stage: their order is unknown",
        """SELECT e.event_id FROM {records} e
           JOIN latest_deal_stage_history o
             ON o.deal_id = e.deal_id AND o.changed_at = e.changed_at AND o.event_id <> e.event_id
            AND o.stage_id <> e.stage_id""",
        f"{CHANGED_EVENTS} UNION ALL {EVENTS_OF_CHANGED_DEALS}",
    ),
    IntegrityRule(
        "deals",
        "deleted_client_reference",
        "flag",
        "the client was deleted in the CRM",
        "SELECT d.deal_id FROM {records} d JOIN latest_clients c USING (client_id) WHERE c.is_deleted",
        """SELECT deal_id FROM delta_deals UNION ALL SELECT deal_id FROM latest_deals
           WHERE client_id IN (SELECT client_id FROM delta_clients)""",
    ),
    IntegrityRule(
        "deals",
        "closed_without_history",
        "flag",
        "the deal is closed but has no stage events (first seen already closed)",
        """SELECT d.deal_id FROM {records} d WHERE d.status IN ('won', 'lost')
           AND NOT EXISTS (SELECT 1 FROM latest_deal_stage_history e WHERE e.deal_id = d.deal_id)""",
        f"SELECT deal_id FROM delta_deals UNION ALL {DEALS_OF_CHANGED_EVENTS}",
    ),
    IntegrityRule(
        "deals",
        "history_gap",
        "flag",
        "the deal is closed but its events never enter a matching terminal stage",
        """SELECT d.deal_id FROM {records} d WHERE d.status IN ('won', 'lost')
           AND EXISTS (SELECT 1 FROM latest_deal_stage_history e WHERE e.deal_id = d.deal_id)
           AND NOT EXISTS (
               SELECT 1 FROM latest_deal_stage_history e
               JOIN latest_stage_catalogue s USING (pipeline_id, stage_id)
               WHERE e.deal_id = d.deal_id
                 AND ((d.status = 'won' AND s.is_won) OR (d.status = 'lost' AND s.is_lost)))""",
        f"SELECT deal_id FROM delta_deals UNION ALL {DEALS_OF_CHANGED_EVENTS}",
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
        """SELECT i.invoice_id FROM {records} i
           WHERE i.currency <> $reporting_currency
             AND i.currency NOT IN (SELECT DISTINCT currency FROM latest_fx_rates)""",
        f"""SELECT invoice_id FROM delta_invoices UNION ALL SELECT invoice_id FROM latest_invoices
           WHERE currency IN ({RATE_CURRENCIES_FLIPPED})""",
    ),
    IntegrityRule(
        "deals",
        "unknown_currency",
        "flag",
        "no exchange rate exists for the currency, so the amount cannot be converted",
        """SELECT d.deal_id FROM {records} d
           WHERE d.currency <> $reporting_currency
             AND d.currency NOT IN (SELECT DISTINCT currency FROM latest_fx_rates)""",
        f"""SELECT deal_id FROM delta_deals UNION ALL SELECT deal_id FROM latest_deals
           WHERE currency IN ({RATE_CURRENCIES_FLIPPED})""",
    ),
    IntegrityRule(
        "invoices",
        "duplicate_invoice_number",
        "exclude",
        "an earlier invoice already carries this invoice number",
        """SELECT invoice_id FROM (
               SELECT invoice_id, row_number() OVER (
                   PARTITION BY invoice_number ORDER BY issue_date, updated_at, invoice_id) AS nth
               FROM {records}) WHERE nth > 1""",
        """SELECT invoice_id FROM delta_invoices UNION ALL SELECT invoice_id FROM latest_invoices
           WHERE invoice_number IN (SELECT invoice_number FROM delta_invoices)""",
        group_column="invoice_number",
    ),
)


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
    whose kept columns differ from what the rules need (a new contract or rule) is rebuilt.

    Leaves a temp table `delta_<table>` per table: the kept columns (less the extract date) of every key
    whose newest version changed in them, its old row and its new one (one of them for a key that
    appeared or went). A version re-sent unchanged is not a change. Empty for a table rebuilt whole."""
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
        compared = ", ".join(f'"{c}"' for c in columns if c != "_extract_date")
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE delta_{table.name} AS "
            f"SELECT {compared} FROM raw.{table.name} LIMIT 0"
        )
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
                _rerank_keys_of_dates(conn, table, state, column_list, changed, compared)
            refreshed[table.name] = len(changed)
        conn.execute(f"DELETE FROM {STATE_SCHEMA}.loaded_dates WHERE table_name = ?", [table.name])
        conn.execute(f"INSERT INTO {STATE_SCHEMA}.loaded_dates SELECT * FROM loaded_now")
    conn.execute("DROP TABLE IF EXISTS loaded_now")
    return refreshed


def _rerank_keys_of_dates(
    conn: duckdb.DuckDBPyConnection,
    table: Table,
    state: str,
    column_list: str,
    dates: list[date],
    compared: str,
) -> None:
    """Drop the kept versions of every key with a row of `dates` (in raw, or kept), rank those keys again;
    fill `delta_<table>` with the rows that changed (`compared` columns), old and new."""
    keys = ", ".join(f'"{c}"' for c in table.primary_key)
    matches = " AND ".join(f'{state}."{c}" = touched_keys."{c}"' for c in table.primary_key)
    conn.execute(
        f"""CREATE OR REPLACE TEMP TABLE touched_keys AS
            SELECT {keys} FROM raw.{table.name} WHERE _extract_date IN ?
            UNION SELECT {keys} FROM {state} WHERE _extract_date IN ?""",
        [dates, dates],
    )
    touched_rows = f"(SELECT * FROM raw.{table.name} SEMI JOIN touched_keys USING ({keys}))"
    conn.execute(f"CREATE OR REPLACE TEMP TABLE ranked AS {_latest_sql(table, column_list, touched_rows)}")
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE replaced AS "
        f"SELECT {compared} FROM {state} SEMI JOIN touched_keys USING ({keys})"
    )
    conn.execute(f"DELETE FROM {state} USING touched_keys WHERE {matches}")
    conn.execute(f"INSERT INTO {state} SELECT * FROM ranked")
    conn.execute(
        f"""INSERT INTO delta_{table.name}
            (SELECT * FROM replaced EXCEPT SELECT {compared} FROM ranked)
            UNION ALL (SELECT {compared} FROM ranked EXCEPT SELECT * FROM replaced)"""
    )
    for name in ("touched_keys", "ranked", "replaced"):
        conn.execute(f"DROP TABLE {name}")


@dataclass(frozen=True)
class IntegrityRefresh:
    counts: dict[str, int]  # findings per `table.rule`
    dates_ranked: dict[str, int]  # per table, extract dates whose keys were ranked again (-1: rebuilt)
    records_checked: dict[str, int]  # per table with rules, records its rules looked at again (-1: every one)
    full_reason: str | None  # why every rule looked at every record this run; None: only what changed


RULES_FINGERPRINT_DDL = f"CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.rules (fingerprint VARCHAR NOT NULL)"


def rules_fingerprint(rules: tuple[IntegrityRule, ...], reporting_currency: str) -> str:
    """Changes with any rule's text, action or reason, or the reporting currency (which a rule reads):
    the findings kept from earlier runs then no longer say what the rules say, and are recomputed."""
    return hashlib.sha256(repr([reporting_currency, *map(astuple, rules)]).encode()).hexdigest()


def _quarantined_parent_keys_sql() -> str:
    """The keys of quarantined rows of every table a reference points at: table_name, parent_key.
    Malformed lines have no parsed key: NULLs are left out, or the rules' NOT IN would match nothing."""
    parents = sorted({(ref.parent_table, ref.parent_key) for ref in REFERENCES})
    return " UNION ".join(
        f"""SELECT '{table}' AS table_name, json_extract_string(original_values, '$.{key}') AS parent_key
            FROM quality.quarantine WHERE table_name = '{table}'
              AND json_extract_string(original_values, '$.{key}') IS NOT NULL"""
        for table, key in parents
    )


def _refresh_quarantined_keys(conn: duckdb.DuckDBPyConnection) -> bool:
    """Fill `delta_quarantined` (parent keys that entered or left the quarantine since the last run) and
    keep the current set; False when there was no kept set to compare with."""
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = 'quarantined_keys'",
        [STATE_SCHEMA],
    ).fetchall()[0][0]
    conn.execute(f"CREATE OR REPLACE TEMP TABLE quarantined_now AS {_quarantined_parent_keys_sql()}")
    if exists:
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE delta_quarantined AS
                (SELECT * FROM quarantined_now EXCEPT SELECT * FROM {QUARANTINED_KEYS})
                UNION ALL (SELECT * FROM {QUARANTINED_KEYS} EXCEPT SELECT * FROM quarantined_now)"""
        )
        conn.execute(f"DELETE FROM {QUARANTINED_KEYS}")
        conn.execute(f"INSERT INTO {QUARANTINED_KEYS} SELECT * FROM quarantined_now")
    else:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE delta_quarantined AS SELECT * FROM quarantined_now LIMIT 0"
        )
        conn.execute(f"CREATE TABLE {QUARANTINED_KEYS} AS SELECT * FROM quarantined_now")
    conn.execute("DROP TABLE quarantined_now")
    return bool(exists)


def _full_refresh_reason(
    conn: duckdb.DuckDBPyConnection, contract: Contract, dates_ranked: dict[str, int], quarantine_kept: bool
) -> str | None:
    """Why this run re-checks every record, or None: nothing but the changed keys' records need it."""
    conn.execute(RULES_FINGERPRINT_DDL)
    fingerprint = rules_fingerprint(RULES, contract.reporting_currency)
    kept = [row[0] for row in conn.execute(f"SELECT fingerprint FROM {STATE_SCHEMA}.rules").fetchall()]
    conn.execute(f"DELETE FROM {STATE_SCHEMA}.rules")
    conn.execute(f"INSERT INTO {STATE_SCHEMA}.rules VALUES (?)", [fingerprint])
    if kept != [fingerprint]:
        # Findings of rules as they were: none is kept (their first detection time goes with them).
        conn.execute("DELETE FROM quality.integrity_issues")
        return "the rules changed" if kept else "no findings kept from an earlier run"
    rebuilt = sorted(table for table, dates in dates_ranked.items() if dates < 0)
    if rebuilt:
        return f"kept versions rebuilt: {', '.join(rebuilt)}"
    if not quarantine_kept:
        return "no quarantined keys kept from an earlier run"
    # The stage rules read the catalogue (a few dozen rows) whole: a change there re-checks everything.
    if conn.execute("SELECT count(*) FROM delta_stage_catalogue").fetchall()[0][0]:
        return "the stage catalogue changed"
    return None


def _scope_tables(conn: duckdb.DuckDBPyConnection, contract: Contract) -> dict[str, tuple[str, str]]:
    """Per table whose rules can all look at part of it: (temp table of the keys to look at again, temp
    table of their newest rows). The keys are the union of what its rules' `affected_keys_sql` name:
    looking at a record no change affects gives the finding it has, so one set serves every rule."""
    scopes: dict[str, tuple[str, str]] = {}
    tables = dict.fromkeys(rule.table_name for rule in RULES)
    for table_name in [t for t in tables if all(r.affected_keys_sql for r in RULES if r.table_name == t)]:
        table = contract.table(table_name)
        affected = " UNION ALL ".join(
            dict.fromkeys(rule.affected_keys_sql for rule in RULES if rule.table_name == table_name)
        )
        keys, records = f"integrity_keys_{table_name}", f"integrity_records_{table_name}"
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE {keys} AS SELECT DISTINCT CAST(key AS VARCHAR) AS record_key
                FROM ({affected}) AS affected(key) WHERE key IS NOT NULL"""
        )
        key = table.primary_key[0]
        for group in dict.fromkeys(
            r.group_column for r in RULES if r.table_name == table_name and r.group_column
        ):
            conn.execute(
                f"""INSERT INTO {keys} SELECT CAST("{key}" AS VARCHAR) FROM latest_{table_name}
                    WHERE "{group}" IN (SELECT "{group}" FROM latest_{table_name}
                                        WHERE "{key}" IN (SELECT record_key FROM {keys}))
                      AND "{key}" NOT IN (SELECT record_key FROM {keys})"""
            )
        conn.execute(
            f"""CREATE OR REPLACE TEMP TABLE {records} AS SELECT * FROM latest_{table_name}
                WHERE "{key}" IN (SELECT record_key FROM {keys})"""
        )
        scopes[table_name] = (keys, records)
    return scopes


def refresh_integrity_issues(
    conn: duckdb.DuckDBPyConnection, contract: Contract, detected_at: datetime
) -> IntegrityRefresh:
    """Bring quality.integrity_issues up to date with the newest version of every key (kept up to date
    incrementally: `refresh_latest_tables`).

    The rules look again only at the records whose finding may have changed since the last run (their
    `affected_keys_sql`, from the keys whose newest version changed); the others keep their findings,
    which is what recomputing them would give. Every record is looked at again when the rules, the
    kept versions or the stage catalogue changed (`IntegrityRefresh.full_reason`). A finding keeps the
    time it was first detected for as long as it holds. One transaction: a failure leaves the findings
    and the kept versions as they were."""
    conn.execute("BEGIN TRANSACTION")
    try:
        dates_ranked = refresh_latest_tables(conn, contract)
        quarantine_kept = _refresh_quarantined_keys(conn)
        full_reason = _full_refresh_reason(conn, contract, dates_ranked, quarantine_kept)
        for table in contract.tables.values():
            kept = f"{STATE_SCHEMA}.latest_{table.name}"
            conn.execute(f"CREATE OR REPLACE TEMP VIEW latest_{table.name} AS SELECT * FROM {kept}")
        scopes = {} if full_reason else _scope_tables(conn, contract)
        records_checked = {rule.table_name: -1 for rule in RULES} | {
            table: conn.execute(f"SELECT count(*) FROM {keys}").fetchall()[0][0]
            for table, (keys, _) in scopes.items()
        }
        for ref in REFERENCES:
            # Materialized: both rules of a reference read it, and the anti-join is the costly part.
            records = scopes[ref.table_name][1] if ref.table_name in scopes else None
            conn.execute(f"CREATE OR REPLACE TEMP TABLE {dangling_name(ref)} AS {dangling_sql(ref, records)}")
        for rule in RULES:
            keys, records = scopes.get(rule.table_name, (None, f"latest_{rule.table_name}"))
            _apply_rule(conn, rule, records, keys, detected_at, contract.reporting_currency)
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
            for name in (
                f"delta_{table.name}",
                f"integrity_keys_{table.name}",
                f"integrity_records_{table.name}",
            ):
                conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute("DROP TABLE IF EXISTS delta_quarantined")
    return IntegrityRefresh(dict(sorted(rows)), dates_ranked, records_checked, full_reason)


def _apply_rule(
    conn: duckdb.DuckDBPyConnection,
    rule: IntegrityRule,
    records: str,
    scope: str | None,
    detected_at: datetime,
    reporting_currency: str,
) -> None:
    """Replace the rule's findings among the records of `scope` (every record: None) with what it finds
    now; a finding found again keeps its row (and its first detection time)."""
    found_sql = rule.record_keys_sql.replace("{records}", records)
    parameters = {"reporting_currency": reporting_currency} if "$reporting_currency" in found_sql else {}
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE integrity_found AS "
        f"SELECT DISTINCT record_key FROM ({found_sql}) AS found(record_key)",
        parameters,
    )
    in_scope = f"AND record_key IN (SELECT record_key FROM {scope})" if scope else ""
    this_rule = {"table_name": rule.table_name, "rule": rule.rule}
    conn.execute(
        f"""DELETE FROM quality.integrity_issues
            WHERE table_name = $table_name AND rule = $rule {in_scope}
              AND record_key NOT IN (SELECT record_key FROM integrity_found)""",
        this_rule,
    )
    conn.execute(
        """INSERT INTO quality.integrity_issues
           SELECT $table_name, record_key, $rule, $action, $reason, $detected_at FROM integrity_found
           WHERE record_key NOT IN (SELECT record_key FROM quality.integrity_issues
                                    WHERE table_name = $table_name AND rule = $rule)""",
        {**this_rule, "action": rule.action, "reason": rule.reason, "detected_at": detected_at},
    )
    conn.execute("DROP TABLE integrity_found")
