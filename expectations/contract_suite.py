"""Expectations derived from the extract contract (`data/contract.yaml`), shared by every suite.

The contract is the single source of truth: this module turns each table's columns, keys and
ranges into GX expectations so a contract change reaches the suites without editing them. A
dataset module adds only what the contract cannot say (soft, statistical rules) and the row
rules whose SQL predicate has a direct GX equivalent, named after the contract's rule.

Every expectation carries `meta={"severity": ..., "rule": ...}`: `error` for what the contract
states (schema, keys, not-null, allowed values, ranges, row rules such as date order), `warn` for
soft rules. The runner reads the severity to decide whether a suite failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import great_expectations as gx
from great_expectations.expectations import Expectation

from data.contract import Column, Table, load_contract

Severity = Literal["error", "warn"]
ERROR: Severity = "error"
WARN: Severity = "warn"

# Lineage columns that ingestion adds to every raw table (not part of the extract contract).
EXTRACT_DATE = "_extract_date"
LINEAGE_COLUMNS = ("_extract_date", "_source_file", "_source_row", "_loaded_at")

# Rule names of the contract-derived expectations (the `rule` in each expectation's meta).
RULE_COLUMN_PRESENT = "column_present"
RULE_NOT_NULL = "not_null"
RULE_ALLOWED_VALUES = "allowed_values"
RULE_RANGE = "range"
RULE_UNIQUE_KEY = "unique_key"


def meta(severity: Severity, rule: str) -> dict[str, str]:
    """The meta every expectation carries; the runner reads `severity` and `rule` from it."""
    if severity not in (ERROR, WARN):
        raise ValueError(f"unknown severity {severity!r}")
    return {"severity": severity, "rule": rule}


def contract_table(table_name: str) -> Table:
    """The contract's definition of `table_name` (KeyError for a table the contract lacks)."""
    return load_contract().table(table_name)


def row_rule_meta(table_name: str, rule: str) -> dict[str, str]:
    """Meta for an expectation that implements one of the table's contract row rules.

    Fails when the contract no longer has the rule, so a renamed or dropped rule cannot leave a
    stale expectation behind under an old name.
    """
    table = contract_table(table_name)
    if rule not in {r.rule for r in table.row_rules}:
        raise KeyError(f"table {table_name!r} has no row rule {rule!r} in the extract contract")
    return meta(ERROR, rule)


def unique_key_columns(table: Table) -> list[str]:
    """The grain of the raw table: primary key, version column, extract date.

    Raw keeps every version of a key across extracts (latest wins downstream), so the key alone
    repeats; key + version + extract date must not.
    """
    version = [table.version_column] if table.version_column else []
    return [*table.primary_key, *version, EXTRACT_DATE]


def _range_bound(column: Column, bound: float | None) -> float | int | None:
    # Integer columns get integer bounds so GX compares like with like (and reports them as such).
    if bound is None:
        return None
    if column.type == "integer" and float(bound).is_integer():
        return int(bound)
    return float(bound)


def column_expectations(column: Column) -> list[Expectation]:
    """Not-null, allowed values and range expectations for one contract column.

    Allowed-values and range expectations ignore nulls (GX skips missing values in map
    expectations); nullability is the not-null expectation's business alone.
    """
    E = gx.expectations
    out: list[Expectation] = []
    if not column.nullable:
        out.append(E.ExpectColumnValuesToNotBeNull(column=column.name, meta=meta(ERROR, RULE_NOT_NULL)))
    if column.allowed is not None:
        out.append(
            E.ExpectColumnValuesToBeInSet(
                column=column.name,
                value_set=list(column.allowed),
                meta=meta(ERROR, RULE_ALLOWED_VALUES),
            )
        )
    if column.min is not None or column.max is not None:
        out.append(
            E.ExpectColumnValuesToBeBetween(
                column=column.name,
                min_value=_range_bound(column, column.min),
                max_value=_range_bound(column, column.max),
                meta=meta(ERROR, RULE_RANGE),
            )
        )
    return out


def contract_expectations(table: Table) -> list[Expectation]:
    """Every expectation the contract implies for `table`, in a stable order.

    - each required column, and the extract-date lineage column the key needs, exists (extra
      columns are fine: ingestion adds lineage columns, so this is a subset check, not a match);
    - per column: not-null, allowed values, min/max range;
    - the raw grain (key + version + extract date) is unique.
    """
    E = gx.expectations
    out: list[Expectation] = [
        E.ExpectColumnToExist(column=name, meta=meta(ERROR, RULE_COLUMN_PRESENT))
        for name in [*table.required_columns, EXTRACT_DATE]
    ]
    for column in table.columns:
        out.extend(column_expectations(column))
    out.append(
        E.ExpectCompoundColumnsToBeUnique(
            column_list=unique_key_columns(table), meta=meta(ERROR, RULE_UNIQUE_KEY)
        )
    )
    return out


def date_order(table_name: str, rule: str, later: str, earlier: str) -> Expectation:
    """`later >= earlier` on every row where both are present: a contract row rule on date order.

    Rows with either date missing are skipped: whether a date may be missing is the not-null
    expectation's (or another row rule's) business, not this one's.
    """
    return gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later,
        column_B=earlier,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        meta=row_rule_meta(table_name, rule),
    )


def build_contract_suite(table_name: str, extra: Iterable[Expectation] = ()) -> gx.ExpectationSuite:
    """A suite named after the table: the contract's expectations, then the dataset's `extra` ones.

    Every expectation must carry severity and rule meta; a missing one is a programming error
    caught here rather than a silently unclassified result at run time.
    """
    table = contract_table(table_name)
    expectations = [*contract_expectations(table), *extra]
    for expectation in expectations:
        expectation_meta = expectation.meta or {}
        if expectation_meta.get("severity") not in (ERROR, WARN) or not expectation_meta.get("rule"):
            raise ValueError(f"{table_name}: expectation {expectation!r} lacks severity/rule meta")
    # Passed to the constructor: `add_expectation` needs an active data context (it checks
    # whether the suite is saved), and building a suite should not.
    suite = gx.ExpectationSuite(name=table_name, expectations=expectations)
    # The constructor logs and drops an invalid expectation; fail loudly instead.
    if len(suite.expectations) != len(expectations):
        raise ValueError(
            f"{table_name}: GX rejected {len(expectations) - len(suite.expectations)} expectation(s)"
        )
    return suite
