"""The suites against the contract: every table has one, and the contract's rules are all in it.

These guard against drift: a contract change that adds a table, a non-nullable column, an
allowed-values list, a range or a row rule fails here until the suites cover it.
"""

import importlib

import great_expectations as gx
import pytest

from data.contract import load_contract
from expectations.contract_suite import (
    ERROR,
    RULE_ALLOWED_VALUES,
    RULE_COLUMN_PRESENT,
    RULE_NOT_NULL,
    RULE_RANGE,
    RULE_UNIQUE_KEY,
    WARN,
    unique_key_columns,
)

TABLES = list(load_contract().tables)


def _suite(table_name: str) -> gx.ExpectationSuite:
    return importlib.import_module(f"expectations.{table_name}").build_suite()


def _configs(table_name: str) -> list[tuple[str, dict, dict]]:
    """(expectation type, kwargs, meta) of every expectation, row conditions included in kwargs."""
    return [
        (e.expectation_type, e.configuration.kwargs, e.meta or {}) for e in _suite(table_name).expectations
    ]


def _unconditional(kwargs: dict) -> bool:
    return kwargs.get("row_condition") in (None, "")


@pytest.mark.parametrize("table_name", TABLES)
def test_every_contract_table_has_a_suite_module(table_name):
    suite = _suite(table_name)
    assert isinstance(suite, gx.ExpectationSuite)
    assert suite.name == table_name
    assert suite.expectations


@pytest.mark.parametrize("table_name", TABLES)
def test_every_expectation_has_severity_and_rule(table_name):
    for kind, _, meta in _configs(table_name):
        assert meta.get("severity") in (ERROR, WARN), kind
        assert meta.get("rule"), kind


@pytest.mark.parametrize("table_name", TABLES)
def test_every_non_nullable_column_has_a_not_null_expectation(table_name):
    covered = {
        kwargs["column"]
        for kind, kwargs, meta in _configs(table_name)
        if kind == "expect_column_values_to_not_be_null"
        and _unconditional(kwargs)
        and meta == {"severity": ERROR, "rule": RULE_NOT_NULL}
    }
    required = {c.name for c in load_contract().table(table_name).columns if not c.nullable}
    assert required <= covered, f"no not-null expectation for {sorted(required - covered)}"
    # and nothing nullable is declared not-null by mistake
    assert covered <= required


@pytest.mark.parametrize("table_name", TABLES)
def test_required_columns_allowed_values_ranges_and_key_are_covered(table_name):
    table = load_contract().table(table_name)
    configs = _configs(table_name)
    present = {k["column"] for kind, k, m in configs if m["rule"] == RULE_COLUMN_PRESENT}
    assert set(table.required_columns) <= present
    allowed = {k["column"]: k["value_set"] for kind, k, m in configs if m["rule"] == RULE_ALLOWED_VALUES}
    assert allowed == {c.name: list(c.allowed) for c in table.columns if c.allowed}
    ranges = {
        k["column"]: (k.get("min_value"), k.get("max_value"))
        for kind, k, m in configs
        if m["rule"] == RULE_RANGE
    }
    assert ranges == {c.name: (c.min, c.max) for c in table.columns if c.min is not None or c.max is not None}
    keys = [k["column_list"] for kind, k, m in configs if m["rule"] == RULE_UNIQUE_KEY]
    assert keys == [unique_key_columns(table)]
    assert keys[0][: len(table.primary_key)] == list(table.primary_key)


@pytest.mark.parametrize("table_name", TABLES)
def test_every_contract_row_rule_has_an_error_expectation(table_name):
    rules = {m["rule"] for _, _, m in _configs(table_name) if m["severity"] == ERROR}
    missing = {r.rule for r in load_contract().table(table_name).row_rules} - rules
    assert not missing, f"row rules without an expectation: {sorted(missing)}"


def test_schema_keys_nulls_values_ranges_are_error_severity():
    error_rules = {RULE_COLUMN_PRESENT, RULE_NOT_NULL, RULE_ALLOWED_VALUES, RULE_RANGE, RULE_UNIQUE_KEY}
    for table_name in TABLES:
        for kind, _, meta in _configs(table_name):
            if meta["rule"] in error_rules:
                assert meta["severity"] == ERROR, (table_name, kind)


def test_date_order_rules_compare_the_right_columns():
    deals = [k for _, k, m in _configs("deals") if m["rule"] == "close_before_create"]
    assert deals == [
        {
            "column_A": "closed_at",
            "column_B": "created_at",
            "or_equal": True,
            "ignore_row_if": "either_value_is_missing",
        }
    ]
    targets = [k for _, k, m in _configs("targets") if m["rule"] == "period_end_before_start"]
    assert targets[0]["column_A"] == "period_end" and targets[0]["column_B"] == "period_start"


def test_list_price_rule_is_a_soft_mostly_warning():
    [(_, kwargs, meta)] = [c for c in _configs("invoice_lines") if c[2]["rule"] == "list_price_ge_unit_price"]
    assert meta["severity"] == WARN
    assert kwargs["mostly"] == pytest.approx(0.95)
