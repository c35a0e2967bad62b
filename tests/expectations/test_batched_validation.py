"""Batched validation of a DuckDB relation gives what whole-frame validation gives, in tiny batches.

Every test validates the same rows twice: `validate_relation` in batches of a few rows, and
`validate` on the relation read as one pandas frame (the reference, what the check did before),
and asserts the two agree on everything (verdicts, counts, percentages, examples, exceptions),
then asserts the figures that matter so agreement cannot be vacuous.
"""

import datetime as dt
from decimal import Decimal

import duckdb
import great_expectations as gx
import pyarrow as pa
import pytest
from gx_frames import valid_table
from hypothesis import given, settings
from hypothesis import strategies as st

from data.contract import load_contract
from expectations import runner
from expectations.runner import SuiteResult, validate, validate_relation

TABLES = list(load_contract().tables)


def tiled(table_name: str, n_rows: int) -> pa.Table:
    """`n_rows` valid rows: the three valid rows repeated, each on its own extract date (so every
    raw key is unique) with its own `_source_row`."""
    base = valid_table(table_name)
    table = pa.concat_tables([base] * (n_rows // base.num_rows + 1)).slice(0, n_rows)
    dates = pa.array([dt.date(2024, 6, 1) + dt.timedelta(days=i) for i in range(n_rows)], pa.date32())
    table = table.set_column(table.schema.get_field_index("_extract_date"), "_extract_date", dates)
    rows = pa.array(range(1, n_rows + 1), pa.int64())
    return table.set_column(table.schema.get_field_index("_source_row"), "_source_row", rows)


def planted(table: pa.Table, column: str, values: dict[int, object]) -> pa.Table:
    """`table` with `column` set to `values[row]` on the given rows."""
    index = table.schema.get_field_index(column)
    column_values = table.column(index).to_pylist()
    for row, value in values.items():
        column_values[row] = value
    return table.set_column(index, column, pa.array(column_values, table.schema.field(column).type))


def copy_row(table: pa.Table, source: int, target: int) -> pa.Table:
    """`table` with row `target` replaced by a copy of row `source` (a duplicate raw key)."""
    return pa.concat_tables([table.slice(0, target), table.slice(source, 1), table.slice(target + 1)])


@pytest.fixture
def conn():
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        yield connection


def relation_of(conn: duckdb.DuckDBPyConnection, table: pa.Table) -> duckdb.DuckDBPyRelation:
    conn.register("extract_rows", table)
    return conn.sql("SELECT * FROM extract_rows")


def both(
    table_name: str, relation: duckdb.DuckDBPyRelation, batch_rows: int, set_rows: int = 1000
) -> tuple[SuiteResult, SuiteResult]:
    """(batched, whole-frame) results on the same rows; asserts they are identical.

    `set_rows` below the row count makes the uniqueness counts run in several passes."""
    batched = validate_relation(table_name, relation, batch_rows=batch_rows, set_rows=set_rows)
    whole = validate(table_name, relation.to_arrow_table().to_pandas())
    assert batched.n_rows == whole.n_rows
    assert batched.success == whole.success
    for mine, reference in zip(batched.results, whole.results, strict=True):
        assert mine == reference
    return batched, whole


def outcome(result: SuiteResult, rule: str, columns: str):
    [found] = [o for o in result.results if o.rule == rule and o.columns == columns]
    return found


@pytest.mark.parametrize("batch_rows", [1, 4, 1000])
@pytest.mark.parametrize("table_name", TABLES)
def test_valid_rows_pass_in_any_batch_size(conn, table_name, batch_rows):
    batched, _ = both(table_name, relation_of(conn, tiled(table_name, 11)), batch_rows)
    assert batched.success and batched.failures == []
    assert batched.n_rows == 11


def test_defects_spread_over_batches_give_the_whole_frames_counts_and_first_examples(conn):
    table = tiled("deals", 20)
    # six unknown channels in four batches of 5: the first five in row order are the examples
    channels = {1: "cold_call", 4: "fax", 7: "cold_call", 12: "walk_in", 16: "fax", 19: "telex"}
    table = planted(table, "source_channel", channels)
    table = planted(table, "currency", {3: "eur"})
    # rows 1, 4, 7, 10, ... are won deals (the valid rows cycle open, won, lost): no amount on two
    table = planted(table, "amount", {4: None, 13: None})
    batched, _ = both("deals", relation_of(conn, table), batch_rows=5)

    channel = outcome(batched, "allowed_values", "source_channel")
    assert (channel.success, channel.unexpected_count) == (False, 6)
    assert channel.unexpected_percent == pytest.approx(100 * 6 / 20)
    assert channel.examples == ["cold_call", "fax", "cold_call", "walk_in", "fax"]
    # a row-conditioned expectation: counted among won deals only (rows 1, 4, 7, 10, 13, 16, 19)
    [amount] = [o for o in batched.failures if o.rule == "won_without_amount"]
    assert (amount.expectation, amount.unexpected_count) == ("expect_column_values_to_not_be_null", 2)
    assert amount.unexpected_percent == pytest.approx(100 * 2 / 7)
    assert amount.examples == [None, None]
    currency = outcome(batched, "currency_code_format", "currency")
    assert (currency.severity, currency.unexpected_count, currency.examples) == ("warn", 1, ["eur"])
    assert not batched.success


@pytest.mark.parametrize("set_rows", [3, 1000])
def test_a_duplicate_key_with_one_copy_in_each_batch_is_found(conn, set_rows):
    # 8 rows in batches of 4: row 6 repeats row 1's key (client, version, extract date)
    table = copy_row(tiled("clients", 8), source=1, target=6)
    relation = relation_of(conn, table)
    for first, second in ((0, 4), (4, 8)):  # no batch holds both copies
        rows = relation.limit(second - first, offset=first).to_arrow_table()
        columns = [rows.column(c).to_pylist() for c in ("client_id", "updated_at", "_extract_date")]
        keys = list(zip(*columns, strict=True))
        assert len(set(keys)) == len(keys)

    batched, _ = both("clients", relation, batch_rows=4, set_rows=set_rows)

    failure = outcome(batched, "unique_key", "client_id, updated_at, _extract_date")
    assert (failure.success, failure.unexpected_count) == (False, 2)  # GX counts both copies
    assert failure.unexpected_percent == pytest.approx(100 * 2 / 8)
    key = {
        "client_id": "client_id-1",
        "updated_at": "2024-03-02T09:00:00+00:00",
        "_extract_date": "2024-06-02",
    }
    assert failure.examples == [key, key]
    assert [o.rule for o in batched.failures] == ["unique_key"]


@pytest.mark.parametrize("set_rows", [1, 2, 1000])
def test_uniqueness_examples_follow_the_relations_row_order_across_batches(conn, set_rows):
    # three duplicated keys, their copies interleaved over four batches of 3
    table = tiled("invoices", 12)
    table = copy_row(table, source=10, target=11)
    table = copy_row(table, source=2, target=7)
    table = copy_row(table, source=5, target=8)
    batched, _ = both("invoices", relation_of(conn, table), batch_rows=3, set_rows=set_rows)

    failure = outcome(batched, "unique_key", "invoice_id, updated_at, _extract_date")
    assert failure.unexpected_count == 6
    # rows 2, 5, 7 (copy of 2), 8 (copy of 5), 10 in order; the sixth (11) is past the cap
    dates = [example["_extract_date"] for example in failure.examples]
    assert dates == ["2024-06-03", "2024-06-06", "2024-06-03", "2024-06-06", "2024-06-11"]


def test_mostly_is_over_all_rows_not_per_batch(conn):
    # 40 lines in batches of 10; two lines above list price, both in the second batch.
    table = planted(tiled("invoice_lines", 40), "list_price", {12: Decimal("1"), 17: Decimal("2")})
    relation = relation_of(conn, table)
    batched, _ = both("invoice_lines", relation, batch_rows=10)

    # overall 2 / 40 = 5 % above list: 95 % at or below, which meets mostly = 0.95
    list_price = outcome(batched, "list_price_ge_unit_price", "list_price, unit_price")
    assert list_price.success
    assert list_price.unexpected_count == 2
    assert list_price.unexpected_percent == pytest.approx(5.0)
    assert batched.success and batched.failures == []
    # ... while the second batch on its own (2 / 10 = 20 %) fails it
    second_batch = validate("invoice_lines", relation.limit(10, offset=10).to_arrow_table().to_pandas())
    assert not outcome(second_batch, "list_price_ge_unit_price", "list_price, unit_price").success

    # a third line above list, in another batch: 3 / 40 = 7.5 % > 5 %, a warning over the whole
    relation = relation_of(conn, planted(table, "list_price", {33: Decimal("1")}))
    batched, _ = both("invoice_lines", relation, batch_rows=10)
    list_price = outcome(batched, "list_price_ge_unit_price", "list_price, unit_price")
    assert (list_price.success, list_price.unexpected_count, list_price.severity) == (False, 3, "warn")
    # (list price, unit price) of rows 12, 17 and 33, in row order across the batches
    assert list_price.examples == [[1.0, 90.0], [2.0, 90.0], [1.0, 90.0]]
    assert batched.success  # a warning only


def test_a_missing_required_column_fails_as_on_the_whole_frame(conn):
    table = tiled("clients", 6).drop_columns(["segment"])
    batched, _ = both("clients", relation_of(conn, table), batch_rows=4)
    assert not batched.success
    assert {o.columns for o in batched.failures} == {"segment"}
    not_null = outcome(batched, "not_null", "segment")
    assert "segment" in not_null.exception


def test_a_missing_key_column_fails_the_uniqueness_check_with_the_reason(conn):
    table = tiled("clients", 6).drop_columns(["updated_at"])
    batched, _ = both("clients", relation_of(conn, table), batch_rows=4)
    unique = outcome(batched, "unique_key", "client_id, updated_at, _extract_date")
    assert not unique.success and "updated_at" in unique.exception


def test_a_missing_optional_column_is_fine(conn):
    table = tiled("clients", 6).drop_columns(["merged_into_client_id"])
    batched, _ = both("clients", relation_of(conn, table), batch_rows=4)
    assert batched.success and batched.failures == []


@pytest.mark.parametrize("table_name", ["deals", "invoice_lines"])
def test_an_empty_relation_gives_the_empty_frames_verdicts(conn, table_name):
    batched, _ = both(table_name, relation_of(conn, tiled(table_name, 3).slice(0, 0)), batch_rows=4)
    assert batched.n_rows == 0 and batched.success


def test_only_the_columns_the_row_expectations_read_are_read():
    plan = runner._validator().plan("invoice_lines")
    assert plan.row_columns is not None
    assert {"_source_file", "_source_row", "_loaded_at"}.isdisjoint(plan.row_columns)
    assert {"unit_price", "list_price", "unit_cost", "invoice_line_id"} <= plan.row_columns


def test_an_expectation_that_cannot_be_batched_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"expect_table_row_count_to_be_between .* cannot"):
        runner._kind(gx.expectations.ExpectTableRowCountToBeBetween(min_value=1))
    with pytest.raises(ValueError, match="row_condition"):
        runner._kind(
            gx.expectations.ExpectColumnValuesToBeUnique(
                column="a", row_condition=gx.expectations.row_conditions.Column("b") == 1
            )
        )


def test_every_suite_splits_into_batchable_parts():
    for table_name in TABLES:
        plan = runner._validator().plan(table_name)
        parts = len(plan.schema_suite.expectations) + len(plan.row_suite.expectations)
        assert parts == len(plan.suite.expectations)
        assert len(plan.positions) == 2 * len(plan.suite.expectations)


# Uniqueness outside the contract suites (column uniqueness, ignore_row_if, nulls and NaN), on a
# suite of its own: the DuckDB query must agree with GX on pandas in every case.
def _uniqueness_suite(table_name: str) -> gx.ExpectationSuite:
    E = gx.expectations
    meta = {"severity": "error", "rule": "test"}
    return gx.ExpectationSuite(
        name=table_name,
        expectations=[
            E.ExpectColumnToExist(column="rate_date", meta=meta),
            E.ExpectColumnValuesToBeUnique(column="currency", meta=meta),
            E.ExpectColumnValuesToBeUnique(column="rate_to_reporting", meta=meta),
            E.ExpectCompoundColumnsToBeUnique(column_list=["rate_date", "currency"], meta=meta),
            E.ExpectCompoundColumnsToBeUnique(
                column_list=["currency", "rate_to_reporting"], ignore_row_if="any_value_is_missing", meta=meta
            ),
            E.ExpectCompoundColumnsToBeUnique(
                column_list=["currency", "rate_to_reporting"], ignore_row_if="never", meta=meta
            ),
            E.ExpectCompoundColumnsToBeUnique(column_list=["currency", "_source_row"], mostly=0.5, meta=meta),
            E.ExpectColumnValuesToNotBeNull(column="currency", mostly=0.5, meta=meta),
        ],
    )


@pytest.mark.parametrize(("batch_rows", "set_rows"), [(2, 1), (3, 2), (100, 1000)])
def test_uniqueness_in_duckdb_agrees_with_gx_on_nulls_nan_ignore_row_if_and_mostly(
    conn, monkeypatch, batch_rows, set_rows
):
    monkeypatch.setattr(runner, "build_suite", _uniqueness_suite)
    fresh = runner._Validator()
    monkeypatch.setattr(runner, "_validator", lambda: fresh)
    nan = float("nan")
    table = pa.table(
        {
            "rate_date": pa.array([dt.date(2024, 1, d) for d in (1, 1, 2, 2, 3, 3, 4, 4)], pa.date32()),
            "currency": pa.array(["USD", "USD", None, None, "GBP", "CHF", None, "CHF"]),
            "rate_to_reporting": pa.array([1.0, 1.0, nan, nan, None, None, 2.0, 2.0], pa.float64()),
            "_source_row": pa.array([1, 1, 2, 2, 3, 4, 5, 6], pa.int64()),
        }
    )
    batched, _ = both("fx_rates", relation_of(conn, table), batch_rows=batch_rows, set_rows=set_rows)
    counts = [(o.expectation, o.columns, o.success, o.unexpected_count) for o in batched.results[1:]]
    assert counts == [
        # non-null currencies USD USD GBP CHF CHF: four repeat
        ("expect_column_values_to_be_unique", "currency", False, 4),
        # NaN and null are missing: 1.0 1.0 2.0 2.0 repeat
        ("expect_column_values_to_be_unique", "rate_to_reporting", False, 4),
        # (1 Jan, USD) twice, (2 Jan, null) twice
        ("expect_compound_columns_to_be_unique", "rate_date, currency", False, 4),
        # rows with no missing value: (USD, 1.0) twice, (CHF, 2.0) once
        ("expect_compound_columns_to_be_unique", "currency, rate_to_reporting", False, 2),
        # every row: (USD, 1.0) x2, (null, NaN) x2 equal to each other as in pandas
        ("expect_compound_columns_to_be_unique", "currency, rate_to_reporting", False, 4),
        # (USD, 1) twice and (null, 2) twice of 8: 50 % unique meets mostly 0.5
        ("expect_compound_columns_to_be_unique", "currency, _source_row", True, 4),
        ("expect_column_values_to_not_be_null", "currency", True, 3),
    ]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.decimals(min_value=-(10**13), max_value=10**13, places=4, allow_nan=False)),
        min_size=1,
        max_size=50,
    )
)
def test_batches_turn_decimals_into_the_floats_whole_frame_validation_uses(values):
    # Whole-frame: Arrow -> Python Decimal -> float64 (correctly rounded); batches: cast in Arrow.
    batch = pa.record_batch({"unit_cost": pa.array(values, pa.decimal128(18, 4))})
    batched = runner._to_pandas("invoice_lines", batch)["unit_cost"]
    whole = runner._prepare("invoice_lines", batch.to_pandas())["unit_cost"]
    assert batched.dtype == whole.dtype == "float64"
    assert batched.to_numpy().tobytes() == whole.to_numpy().tobytes()  # bit for bit, NaN for null


def test_failing_decimal_values_are_reported_as_the_same_floats(conn):
    awkward = {2: Decimal("-0.0003"), 5: Decimal("-123456789.1234"), 8: Decimal("-0.1")}
    table = planted(tiled("invoice_lines", 9), "unit_cost", awkward)
    batched, _ = both("invoice_lines", relation_of(conn, table), batch_rows=2)
    failure = outcome(batched, "range", "unit_cost")
    assert failure.examples == [-0.0003, -123456789.1234, -0.1]
