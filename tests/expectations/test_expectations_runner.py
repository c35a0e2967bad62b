"""The runner on small literal frames: valid data passes, each kind of breakage fails as it should."""

import datetime as dt
import json
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from gx_frames import to_pandas, valid_frame, valid_table

from data.contract import load_contract
from expectations.runner import ExpectationOutcome, SuiteResult, to_records, validate

TABLES = list(load_contract().tables)
FLAVOURS = ["numpy", "arrow", "nullable"]


def _only_failure(result: SuiteResult) -> ExpectationOutcome:
    assert len(result.failures) == 1, [(o.rule, o.columns, o.exception) for o in result.failures]
    return result.failures[0]


def _with(table_name: str, flavour: str, **columns) -> pd.DataFrame:
    """A valid frame with some columns replaced by literal values (typed as the original column)."""
    table = valid_table(table_name)
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.array(values, table.schema.field(name).type))
    return to_pandas(table, flavour)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("table_name", TABLES)
def test_a_valid_frame_passes_every_expectation(table_name, flavour):
    result = validate(table_name, valid_frame(table_name, flavour))
    assert result.success
    assert result.failures == []
    assert result.n_rows == 3
    assert result.table_name == table_name


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_null_in_a_non_nullable_column_is_an_error(flavour):
    result = validate("clients", _with("clients", flavour, segment=["smb", None, "mid"]))
    failure = _only_failure(result)
    assert (failure.rule, failure.severity, failure.columns) == ("not_null", "error", "segment")
    assert failure.unexpected_count == 1
    assert failure.expectation == "expect_column_values_to_not_be_null"
    assert not result.success


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_value_outside_the_allowed_list_is_an_error(flavour):
    frame = _with("deals", flavour, source_channel=["inbound", "cold_call", "partner"])
    failure = _only_failure(validate("deals", frame))
    assert (failure.rule, failure.severity, failure.columns) == ("allowed_values", "error", "source_channel")
    assert failure.unexpected_count == 1
    assert failure.examples == ["cold_call"]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_negative_decimal_amount_is_a_range_error(flavour):
    frame = _with("invoice_lines", flavour, unit_cost=[Decimal("60"), Decimal("-0.5000"), Decimal("60")])
    result = validate("invoice_lines", frame)
    failure = _only_failure(result)
    assert (failure.rule, failure.severity, failure.columns) == ("range", "error", "unit_cost")
    assert failure.unexpected_count == 1
    assert failure.unexpected_percent == pytest.approx(100 / 3)
    assert failure.examples == [-0.5]
    assert not result.success


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_negative_amount_on_a_deal_is_a_range_error_and_a_won_deal_needs_a_positive_amount(flavour):
    # row 1 is won: a negative amount breaks both the contract range and won_without_amount
    frame = _with("deals", flavour, amount=[None, Decimal("-5"), Decimal("800")])
    result = validate("deals", frame)
    failed = {(o.rule, o.columns, o.unexpected_count) for o in result.failures}
    assert failed == {("range", "amount", 1), ("won_without_amount", "amount", 1)}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_integer_range_with_a_maximum(flavour):
    frame = _with("activities", flavour, duration_minutes=[30, 2000, None])
    failure = _only_failure(validate("activities", frame))
    assert (failure.rule, failure.columns, failure.unexpected_count) == ("range", "duration_minutes", 1)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_duplicate_key_version_and_extract_date_is_an_error(flavour):
    frame = valid_frame("clients", flavour)
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)
    result = validate("clients", frame)
    failure = _only_failure(result)
    assert (failure.rule, failure.severity) == ("unique_key", "error")
    assert failure.columns == "client_id, updated_at, _extract_date"
    assert failure.unexpected_count == 2  # GX counts every row of a duplicated key
    assert result.n_rows == 4


def test_same_key_in_another_version_or_extract_is_not_a_duplicate():
    frame = valid_frame("clients")
    later_version = frame.iloc[[0]].assign(updated_at=frame["updated_at"].iloc[0] + pd.Timedelta(hours=1))
    next_extract = frame.iloc[[0]].assign(_extract_date=dt.date(2024, 6, 2))
    result = validate("clients", pd.concat([frame, later_version, next_extract], ignore_index=True))
    assert result.success and not result.failures


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_closed_before_created_is_an_error(flavour):
    # created_at of the rows: 1, 2 and 3 March 09:00 UTC; the won deal closes a day early.
    day = dt.timedelta(days=1)
    created = dt.datetime(2024, 3, 2, 9, tzinfo=dt.UTC)
    frame = _with("deals", flavour, closed_at=[None, created - day, created + day])
    result = validate("deals", frame)
    failure = _only_failure(result)
    assert (failure.rule, failure.severity) == ("close_before_create", "error")
    assert failure.columns == "closed_at, created_at"
    assert failure.unexpected_count == 1
    assert failure.examples == [["2024-03-01T09:00:00+00:00", "2024-03-02T09:00:00+00:00"]]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_period_end_before_start_is_an_error_on_dates(flavour):
    frame = _with(
        "targets", flavour, period_end=[dt.date(2024, 2, 1), dt.date(2024, 3, 31), dt.date(2024, 4, 2)]
    )
    failure = _only_failure(validate("targets", frame))
    assert (failure.rule, failure.columns, failure.unexpected_count) == (
        "period_end_before_start",
        "period_end, period_start",
        1,
    )
    assert failure.examples == [["2024-02-01", "2024-03-01"]]


def test_missing_required_column_is_an_error():
    result = validate("clients", valid_frame("clients").drop(columns=["segment"]))
    assert not result.success
    present = [o for o in result.results if o.rule == "column_present" and o.columns == "segment"]
    assert len(present) == 1 and not present[0].success and present[0].severity == "error"
    # The other expectations on the column cannot run: reported as failures with the reason.
    not_null = next(o for o in result.results if o.rule == "not_null" and o.columns == "segment")
    assert not not_null.success and "segment" in not_null.exception
    assert {o.columns for o in result.failures} == {"segment"}


def test_non_numeric_values_in_a_numeric_column_fail_rather_than_vanish():
    frame = valid_frame("activities").assign(duration_minutes=pd.Series(["x", "5", None], dtype=object))
    result = validate("activities", frame)
    failure = _only_failure(result)
    assert (failure.rule, failure.columns) == ("range", "duration_minutes")
    assert failure.exception
    assert not result.success


def test_missing_optional_column_is_fine():
    frame = valid_frame("clients").drop(columns=["merged_into_client_id"])
    result = validate("clients", frame)
    assert result.success and not result.failures
    assert "merged_into_client_id" not in frame.columns  # the caller's frame is not modified


def test_a_warn_only_failure_leaves_the_suite_passing():
    # one line of three above list price: 67 % < mostly 95 %
    frame = _with("invoice_lines", "numpy", list_price=[Decimal("100"), Decimal("99"), Decimal("100")])
    result = validate("invoice_lines", frame)
    failure = _only_failure(result)
    assert (failure.rule, failure.severity) == ("list_price_ge_unit_price", "warn")
    assert failure.unexpected_count == 1
    assert result.success
    assert result.warnings == [failure] and result.errors == []


def test_contract_row_rules_on_deals_invoices_and_stages():
    deals = validate("deals", _with("deals", "numpy", closed_at=[None, None, None]))
    assert {(o.rule, o.unexpected_count) for o in deals.failures} == {("closed_without_close_time", 2)}
    invoices = validate("invoices", _with("invoices", "numpy", original_invoice_id=[None, None, None]))
    assert {(o.rule, o.unexpected_count) for o in invoices.failures} == {("credit_note_without_original", 1)}
    stages = validate("stage_catalogue", _with("stage_catalogue", "arrow", is_lost=[False, True, True]))
    assert {(o.rule, o.unexpected_count) for o in stages.failures} == {("terminal_both_won_and_lost", 1)}


def test_results_come_in_suite_order():
    result = validate("targets", valid_frame("targets"))
    table = load_contract().table("targets")
    assert [o.columns for o in result.results[: len(table.required_columns)]] == table.required_columns
    assert result.results[-1].rule == "period_end_before_start"


def test_to_records_is_flat_and_json_ready():
    frame = _with("invoice_lines", "arrow", unit_price=[Decimal("-1"), Decimal("100"), Decimal("90")])
    result = validate("invoice_lines", frame)
    records = to_records(result)
    assert len(records) == len(result.results)
    assert set(records[0]) == {
        "table_name",
        "expectation",
        "columns",
        "severity",
        "rule",
        "success",
        "unexpected_count",
        "unexpected_percent",
        "examples_json",
        "observed_json",
    }
    failed = [r for r in records if not r["success"]]
    assert [(r["rule"], r["columns"], r["unexpected_count"]) for r in failed] == [("range", "unit_price", 1)]
    assert json.loads(failed[0]["examples_json"]) == [-1.0]
    for record in records:
        json.loads(record["examples_json"])
        assert record["observed_json"] is None or json.loads(record["observed_json"]) is not None
        assert all(isinstance(v, (str, int, float, bool, type(None))) for v in record.values())


def test_to_records_carries_the_reason_an_expectation_could_not_run():
    result = validate("fx_rates", valid_frame("fx_rates").drop(columns=["currency"]))
    broken = [r for r in to_records(result) if r["rule"] == "not_null" and r["columns"] == "currency"]
    assert "exception" in json.loads(broken[0]["observed_json"])


def test_unknown_table_is_a_clear_error():
    with pytest.raises(KeyError, match="no_such_table"):
        validate("no_such_table", pd.DataFrame())
