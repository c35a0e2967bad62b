"""Run a table's suite on its rows and return plain, JSON-able results.

`validate_relation(table_name, relation)` is what the Dagster asset checks call, once per table per
run: it validates a DuckDB relation (the partition's rows) in batches of at most `BATCH_ROWS` rows,
so memory stays bounded whatever the partition size, and gives the same result as
`validate(table_name, frame)` on the whole partition as one pandas frame (see `validate_relation`
for how). The GX context, data source and suites are built once per process and reused; nothing is
written to disk (in-memory stores, no data docs, no analytics, no progress bars).

A suite fails (`SuiteResult.success` is False) only on an `error`-severity failure; a `warn`
failure is reported but leaves the suite passing.

great_expectations is imported here after `expectations/__init__.py` has run (a submodule always
loads its package first), so GX_ANALYTICS_ENABLED is already set when GX loads.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import json
import logging
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb
import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine
from great_expectations.expectations import row_conditions
from great_expectations.expectations.expectation import _format_map_output, _mostly_success
from great_expectations.expectations.expectation_configuration import parse_result_format

from data.contract import load_contract
from expectations.contract_suite import ERROR
from ingestion.warehouse import repeated_hashes

# How many example unexpected values each outcome keeps.
EXAMPLE_COUNT = 5

# BASIC gives unexpected_count / unexpected_percent and the first few unexpected values without
# the value counts, index lists or full unexpected lists of SUMMARY / COMPLETE (memory and time
# at 1M rows). Exceptions are caught per expectation and reported as failures, so one broken
# expectation (e.g. on a missing column) does not hide the others.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "BASIC",
    "partial_unexpected_count": EXAMPLE_COUNT,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}

_DATA_SOURCE = "raw_frames"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation, stripped of GX objects.

    `columns` is the column, or the columns joined with ", " for pair / compound expectations;
    `examples` holds up to EXAMPLE_COUNT unexpected values made JSON-able (a pair as a list);
    `observed` is GX's observed value when it reports one; `exception` is the message when the
    expectation could not run (e.g. its column is missing), which also counts as a failure.
    """

    expectation: str
    columns: str
    severity: str
    rule: str
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    exception: str | None = None


@dataclass(frozen=True)
class SuiteResult:
    """The result of one table's suite: `success` is False only if an `error` expectation failed."""

    table_name: str
    success: bool
    n_rows: int
    results: list[ExpectationOutcome]

    @property
    def failures(self) -> list[ExpectationOutcome]:
        """Every failed expectation, errors and warnings alike."""
        return [r for r in self.results if not r.success]

    @property
    def errors(self) -> list[ExpectationOutcome]:
        """Failed `error`-severity expectations (the ones that fail the suite)."""
        return [r for r in self.failures if r.severity == ERROR]

    @property
    def warnings(self) -> list[ExpectationOutcome]:
        """Failed expectations of any other severity (reported, not failing)."""
        return [r for r in self.failures if r.severity != ERROR]


# Expectations, by `expectation_type`, and how `validate_relation` evaluates each kind.
# - schema: about the columns, not the rows; GX runs them once on a zero-row frame that has every
#   column of the relation.
# - rows: each row passes or fails on its own values, so the counts of a batch add up and the
#   first failing values of the first batches are the partition's first failing values. GX runs
#   them on every batch; `_MapTally` adds the batches up. Listed one by one (not "every map
#   expectation"): a new kind must be checked to be row-wise before it is batched.
# - set: whether a row fails depends on other rows (uniqueness), so a batch cannot tell; DuckDB
#   counts it over the whole relation, with GX's counts and examples (`_set_outcome`).
SCHEMA_EXPECTATIONS = frozenset(
    {
        "expect_column_to_exist",
        "expect_table_columns_to_match_set",
        "expect_table_columns_to_match_ordered_list",
        "expect_table_column_count_to_equal",
        "expect_table_column_count_to_be_between",
    }
)
ROW_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_values_to_be_between",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_value_lengths_to_equal",
        "expect_column_pair_values_a_to_be_greater_than_b",
        "expect_column_pair_values_to_be_equal",
        "expect_column_pair_values_to_be_in_set",
        "expect_select_column_values_to_be_unique_within_record",
        "expect_multicolumn_sum_to_equal",
    }
)
SET_EXPECTATIONS = frozenset({"expect_compound_columns_to_be_unique", "expect_column_values_to_be_unique"})

# Rows per batch of `validate_relation`. Measured on invoice_lines (the widest raw table) at 8M
# rows: about 0.5 GB above the process's imports with 200k, 0.7 GB with 500k (and about 10 %
# faster: GX plans every batch anew, about 0.1 s each); 8.5 GB for the whole partition at once.
BATCH_ROWS = 200_000

# Keys per pass of a uniqueness count in DuckDB (see `_set_outcome`): a hash table of about
# 2M keys is about 200 MB; a larger partition is counted in more passes.
SET_ROWS = 2_000_000


def _kind(expectation: Any) -> str:
    kind = expectation.expectation_type
    if kind in SCHEMA_EXPECTATIONS:
        return "schema"
    if kind in ROW_EXPECTATIONS:
        return "rows"
    if kind in SET_EXPECTATIONS:
        if getattr(expectation, "row_condition", None) not in (None, ""):
            raise ValueError(f"{kind} with a row_condition is not supported by validate_relation")
        return "set"
    raise ValueError(
        f"{kind} is neither row-wise nor supported over a whole relation: validate_relation cannot "
        "evaluate it in batches (add it to ROW_EXPECTATIONS if each row passes or fails on its own, "
        "or give it a whole-partition implementation in expectations/runner.py)"
    )


def _kwarg_columns(kwargs: dict[str, Any]) -> list[str]:
    """The columns an expectation names in its arguments."""
    names = [kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")]
    names += list(kwargs.get("column_list") or []) + list(kwargs.get("column_set") or [])
    return [str(name) for name in names if name is not None]


def _condition_columns(condition: Any) -> set[str] | None:
    """The columns a row condition reads; None when it cannot be told (a string or pass-through)."""
    if condition is None or condition == "":
        return set()
    if isinstance(condition, (row_conditions.ComparisonCondition, row_conditions.NullityCondition)):
        return {condition.column.name}
    if isinstance(condition, (row_conditions.AndCondition, row_conditions.OrCondition)):
        columns: set[str] = set()
        for part in condition.conditions:
            part_columns = _condition_columns(part)
            if part_columns is None:
                return None
            columns |= part_columns
        return columns
    return None


@dataclass(frozen=True)
class _Plan:
    """A table's suite, whole and split by kind (see SCHEMA_EXPECTATIONS), registered with GX.

    `positions` maps the id of every expectation of the three suites to its position in the
    whole suite, which is the order results are reported in. The schema suite also holds the set
    expectations: on a zero-row frame GX reports whether they can run at all (a missing column)
    with the message it would give on the whole partition. `row_columns` are the columns the row
    suite reads (None: every column, when a row condition's columns cannot be told).
    """

    batch_definition: Any
    suite: gx.ExpectationSuite
    schema_suite: gx.ExpectationSuite
    row_suite: gx.ExpectationSuite
    positions: dict[str, int]
    row_columns: frozenset[str] | None


class _Validator:
    """One ephemeral GX context with a pandas data source; suites and batch definitions per table."""

    def __init__(self) -> None:
        # An explicit in-memory config: the default ephemeral config also sets up a temporary
        # data-docs site, and the others would look for or write a gx/ project directory.
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        self._source = self._context.data_sources.add_pandas(name=_DATA_SOURCE)
        self._plans: dict[str, _Plan] = {}
        # GX contexts are not documented as thread-safe; validation is GIL-bound pandas work
        # anyway, so serialising it costs little and keeps a threaded executor safe.
        self._lock = threading.RLock()

    def plan(self, table_name: str) -> _Plan:
        with self._lock:
            if table_name not in self._plans:
                self._plans[table_name] = self._build_plan(table_name)
            return self._plans[table_name]

    def _build_plan(self, table_name: str) -> _Plan:
        suite = self._context.suites.add(build_suite(table_name))
        kinds = [_kind(expectation) for expectation in suite.expectations]
        positions = {expectation.id: position for position, expectation in enumerate(suite.expectations)}

        def part(name: str, wanted: set[str]) -> gx.ExpectationSuite:
            # A fresh build: the expectation objects of `suite` belong to it (their ids are set).
            picked = [
                (position, expectation)
                for position, (expectation, kind) in enumerate(
                    zip(build_suite(table_name).expectations, kinds, strict=True)
                )
                if kind in wanted
            ]
            part_suite = self._context.suites.add(
                gx.ExpectationSuite(name=f"{table_name}.{name}", expectations=[e for _, e in picked])
            )
            if len(part_suite.expectations) != len(picked):
                raise ValueError(f"{table_name}: GX rejected an expectation of the {name} suite")
            for (position, _), expectation in zip(picked, part_suite.expectations, strict=True):
                positions[expectation.id] = position
            return part_suite

        row_suite = part("rows", {"rows"})
        row_columns: set[str] | None = set()
        for expectation in row_suite.expectations:
            condition_columns = _condition_columns(getattr(expectation, "row_condition", None))
            if condition_columns is None:
                row_columns = None
                break
            row_columns |= condition_columns | set(_kwarg_columns(expectation.configuration.kwargs))
        asset = self._source.add_dataframe_asset(name=table_name)
        return _Plan(
            batch_definition=asset.add_batch_definition_whole_dataframe(name=table_name),
            suite=suite,
            schema_suite=part("schema", {"schema", "set"}),
            row_suite=row_suite,
            positions=positions,
            row_columns=None if row_columns is None else frozenset(row_columns),
        )

    def run(self, plan: _Plan, suite: gx.ExpectationSuite, frame: pd.DataFrame) -> list[Any]:
        """GX's results of `suite` on `frame` (an empty suite gives none)."""
        if not suite.expectations:
            return []
        with self._lock:
            batch = plan.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            return list(batch.validate(suite, result_format=RESULT_FORMAT).results)


@cache
def _validator() -> _Validator:
    # GX logs at INFO/WARNING about context and store set-up; keep the run logs to our own lines.
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    # GX fingerprints every pandas batch (an md5 over `hash_pandas_object` of the whole frame,
    # for a `batch_markers` entry we never read) when the frame's shallow size is below this
    # threshold, twice per validation. On Arrow-backed columns pandas hashes through Python
    # objects: about 80 % of a 1M-row validation. A threshold of 0 skips only the fingerprint.
    pandas_execution_engine.HASH_THRESHOLD = 0
    return _Validator()


def build_suite(table_name: str) -> gx.ExpectationSuite:
    """The suite of a contract table, from its module `expectations.<table_name>`."""
    load_contract().table(table_name)  # a clear KeyError for a table the contract lacks
    module = importlib.import_module(f"expectations.{table_name}")
    return module.build_suite()


# Contract types validated as float64: GX's pandas range check is vectorised only for numpy
# int/float columns and calls a Python function per value otherwise (Arrow dtypes, nullable Int64,
# object columns of Decimal), which made it 4x slower at 1M rows.
NUMERIC_TYPES = ("decimal", "integer", "double")


def _as_float64(series: pd.Series) -> pd.Series:
    """A numeric column as numpy float64 (nulls become NaN, which GX counts as missing)."""
    if series.dtype == np.float64:
        return series
    if isinstance(series.dtype, pd.ArrowDtype):
        # Cast inside Arrow: pandas' own astype goes through Python objects for decimal128.
        values = series.astype(pd.ArrowDtype(pa.float64())).to_numpy(dtype=np.float64, na_value=np.nan)
        return pd.Series(values, index=series.index, name=series.name)
    if series.dtype == object:
        # Decimal objects and None from Arrow's default conversion; to_numeric also takes pd.NA.
        # Never coerce: a value that is not a number must raise, not turn into a silent null.
        try:
            return series.astype(np.float64)
        except (TypeError, ValueError):
            return pd.to_numeric(series).astype(np.float64)
    return series.astype(np.float64)


def _to_pandas(table_name: str, batch: pa.RecordBatch) -> pd.DataFrame:
    """A record batch as pandas, its decimal contract columns already float64.

    Arrow's default conversion makes a Python Decimal per value, which `_prepare` then turns
    into a float: most of the conversion time of a batch. Arrow casts decimal -> string -> float64
    instead, in C++: the decimal's exact digits parsed with correct rounding, which is what
    float(Decimal) gives, so the values are the same to the last bit.
    """
    numeric = {c.name for c in load_contract().table(table_name).columns if c.type in NUMERIC_TYPES}
    for index, column in enumerate(batch.schema):
        if column.name in numeric and pa.types.is_decimal(column.type):
            as_float = pc.cast(pc.cast(batch.column(index), pa.string()), pa.float64())
            batch = batch.set_column(index, column.name, as_float)
    return batch.to_pandas()


def _prepare(table_name: str, frame: pd.DataFrame, present: Iterable[str] | None = None) -> pd.DataFrame:
    """The frame as the suite validates it; the caller's frame is never modified.

    - Optional contract columns (`required: false`) the file omitted (not in `present`, by
      default the frame's columns; a batch may hold only some of its relation's columns) are
      added as all-null: the contract lets a file leave them out, so expectations on them see
      nulls rather than failing for a missing column. Missing required columns stay missing so
      `column_present` fails.
    - Numeric contract columns (decimal, integer, double) become float64, for speed (see
      NUMERIC_TYPES). The checks stay exact where it matters: DECIMAL(18,4) values keep their
      sign and order in float64 (15-16 significant digits), and the bounds are small constants.
      Example values of such columns are reported as floats.
    """
    table = load_contract().table(table_name)
    present = set(frame.columns if present is None else present)
    changes: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name not in frame.columns:
            if not column.required and column.name not in present:
                changes[column.name] = pd.Series(pd.NA, index=frame.index, dtype=object)
        elif column.type in NUMERIC_TYPES:
            try:
                converted = _as_float64(frame[column.name])
            except (TypeError, ValueError):
                # Not numeric at all (an ingestion bug): validate it as it is and let the
                # expectations on it report the values they cannot compare.
                continue
            if converted is not frame[column.name]:
                changes[column.name] = converted
    # assign() returns a new frame (copy-on-write: unchanged columns are not copied).
    return frame.assign(**changes) if changes else frame


def _columns(kwargs: dict[str, Any]) -> str:
    if "column" in kwargs:
        return str(kwargs["column"])
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    for key in ("column_list", "column_set"):
        if key in kwargs:
            return ", ".join(map(str, kwargs[key]))
    return ""


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON types: nulls to None, decimals to str (exact), times to ISO 8601."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        # GX hands pair values over as numpy datetimes, which cannot carry a zone; stored
        # timestamps are UTC, so say so (as the tz-aware values of other expectations do).
        return None if np.isnat(value) else pd.Timestamp(value).tz_localize("UTC").isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    return str(value)


def _exception_message(exception_info: dict[str, Any] | None) -> str | None:
    """The message of an exception GX caught, or None.

    GX reports either one flat `{"raised_exception", "exception_message", ...}` dict or, when
    a metric failed to resolve, one such dict per metric; the distinct messages are joined.
    """
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    messages = dict.fromkeys(
        str(info.get("exception_message") or "exception without a message")
        for info in infos
        if isinstance(info, dict) and info.get("raised_exception")
    )
    return "; ".join(messages) or None


def _outcome(
    config: Any, success: bool, details: dict[str, Any] | None, exception_info: dict[str, Any] | None
) -> ExpectationOutcome:
    """An outcome from an expectation's configuration and GX's result parts."""
    expectation_meta = config.meta or {}
    details = details or {}
    exception = _exception_message(exception_info)
    unexpected_count = details.get("unexpected_count")
    unexpected_percent = details.get("unexpected_percent")
    return ExpectationOutcome(
        expectation=config.type,
        columns=_columns(config.kwargs),
        # An expectation without severity fails closed: it is treated as an error.
        severity=expectation_meta.get("severity", ERROR),
        rule=expectation_meta.get("rule", config.type),
        success=bool(success) and exception is None,
        unexpected_count=None if unexpected_count is None else int(unexpected_count),
        unexpected_percent=_jsonable(unexpected_percent),
        examples=_jsonable(list(details.get("partial_unexpected_list") or [])[:EXAMPLE_COUNT]),
        observed=_jsonable(details.get("observed_value")),
        exception=exception,
    )


def _result_outcome(result: Any) -> ExpectationOutcome:
    """The outcome of one GX validation result."""
    return _outcome(result.expectation_config, result.success, result.result, result.exception_info)


def _suite_result(table_name: str, n_rows: int, outcomes: list[ExpectationOutcome]) -> SuiteResult:
    success = all(o.success for o in outcomes if o.severity == ERROR)
    return SuiteResult(table_name=table_name, success=success, n_rows=n_rows, results=outcomes)


def validate(table_name: str, frame: pd.DataFrame) -> SuiteResult:
    """Validate `frame` (a raw extract table as pandas, lineage columns included) with its suite.

    The whole frame in one GX validation: memory grows with the frame. The asset checks use
    `validate_relation`, which gives the same result in bounded memory. Results come in the
    suite's order. Numeric columns are validated as float64 (see `_prepare`): GX handles Decimal
    and Arrow columns correctly but value by value, which is slow.
    """
    validator = _validator()
    plan = validator.plan(table_name)
    results = validator.run(plan, plan.suite, _prepare(table_name, frame))
    results.sort(key=lambda r: plan.positions.get(r.expectation_config.id, len(plan.positions)))
    return _suite_result(table_name, len(frame), [_result_outcome(r) for r in results])


def _map_output(
    success: bool, element_count: int, nonnull_count: int | None, unexpected_count: int | None, examples: list
) -> dict[str, Any]:
    """GX's own BASIC result dict of a map expectation from its counts (same keys, same percentages)."""
    output = _format_map_output(
        result_format=parse_result_format(dict(RESULT_FORMAT)),
        success=success,
        element_count=element_count,
        nonnull_count=nonnull_count,
        unexpected_count=unexpected_count,
        unexpected_list=examples,
    )
    return output["result"]


def _map_success(
    config: Any, element_count: int, nonnull_count: int | None, unexpected_count: int | None
) -> bool:
    """GX's verdict of a map expectation from its counts over all rows.

    `mostly` is a share of all the rows the expectation considers (non-null, or every row for
    the null checks, which report no missing count), never of one batch. As in GX: vacuously
    true with no row to consider.
    """
    considered = element_count if nonnull_count is None else nonnull_count
    if unexpected_count is None or element_count == 0 or considered == 0:
        return True
    return _mostly_success(considered, unexpected_count, config.kwargs.get("mostly", 1))


@dataclass
class _MapTally:
    """One row-wise expectation's result, added up over batches.

    GX reports per batch the rows it counted (`element_count`), the missing ones it skipped
    (`missing_count`; absent for the null checks, which consider every row), the failing ones
    and the first EXAMPLE_COUNT failing values in row order. Batches come in the relation's
    order, so the first examples of the first batches are the partition's first examples. An
    exception in any batch (a missing column, values that cannot be compared) makes the
    expectation fail with the first message, as it would on the whole partition.
    """

    config: Any
    element_count: int = 0
    nonnull_count: int | None = 0
    unexpected_count: int | None = 0
    examples: list[Any] = field(default_factory=list)
    exception_info: dict[str, Any] | None = None

    def add(self, result: Any) -> None:
        if _exception_message(result.exception_info) is not None:
            self.exception_info = self.exception_info or result.exception_info
            return
        details = result.result or {}
        element_count = int(details.get("element_count") or 0)
        self.element_count += element_count
        missing_count = details.get("missing_count")
        if missing_count is None or self.nonnull_count is None:
            self.nonnull_count = None
        else:
            self.nonnull_count += element_count - int(missing_count)
        unexpected_count = details.get("unexpected_count")
        if unexpected_count is None or self.unexpected_count is None:
            self.unexpected_count = None
        else:
            self.unexpected_count += int(unexpected_count)
        if len(self.examples) < EXAMPLE_COUNT:
            self.examples.extend(
                list(details.get("partial_unexpected_list") or [])[: EXAMPLE_COUNT - len(self.examples)]
            )

    def outcome(self) -> ExpectationOutcome:
        if self.exception_info is not None:
            return _outcome(self.config, False, {}, self.exception_info)
        success = _map_success(self.config, self.element_count, self.nonnull_count, self.unexpected_count)
        details = _map_output(
            success, self.element_count, self.nonnull_count, self.unexpected_count, self.examples
        )
        return _outcome(self.config, success, details, None)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# The name the relation goes by inside the uniqueness queries.
_SOURCE = "_gx_source"


def _set_outcome(
    table_name: str, config: Any, relation: duckdb.DuckDBPyRelation, types: dict[str, str], set_rows: int
) -> ExpectationOutcome:
    """A uniqueness expectation over the whole relation, in DuckDB, with GX's counts and examples.

    GX on pandas marks every row whose key occurs more than once (`duplicated(keep=False)`, nulls
    equal to nulls, as GROUP BY groups them), among the rows it considers:
    - compound columns: rows not ignored by `ignore_row_if` (by default rows whose key columns
      are all missing);
    - one column: rows where the column is not missing.
    Missing is SQL NULL, or NaN in a floating-point column (pandas' `dropna`).

    Memory: above `set_rows` considered rows, the keys' hashes are counted first, in passes over
    disjoint slices of the hash space (`ingestion.warehouse.repeated_hashes`), each holding about
    `set_rows` of them in DuckDB's hash table, so it stays bounded as the partition grows; then only
    the rows whose key hash repeats (few) are grouped by their key. Every copy of a key has the same
    hash, so no copy is missed, and grouping by the key itself leaves hash collisions out. The
    relation is read three times (four with failures) whatever its size.

    Examples are the first EXAMPLE_COUNT failing rows in the relation's order: `row_number()
    OVER ()` numbers the considered rows in the order the batches read them (DuckDB keeps a
    table's order through WHERE and an empty window). Key columns as a dict per row for compound
    columns, the value for one column, converted as the batches convert them.
    """
    kwargs = config.kwargs
    compound = config.type == "expect_compound_columns_to_be_unique"
    columns = [str(c) for c in (kwargs["column_list"] if compound else [kwargs["column"]])]
    ignore_row_if = (
        kwargs.get("ignore_row_if", "all_values_are_missing") if compound else "any_value_is_missing"
    )

    def missing(column: str) -> str:
        quoted = _quote(column)
        if types[column] in ("FLOAT", "DOUBLE"):
            return f"({quoted} IS NULL OR isnan({quoted}))"
        return f"{quoted} IS NULL"

    if ignore_row_if == "all_values_are_missing":
        keep = "NOT (" + " AND ".join(missing(c) for c in columns) + ")"
    elif ignore_row_if == "any_value_is_missing":
        keep = "NOT (" + " OR ".join(missing(c) for c in columns) + ")"
    elif ignore_row_if == "never":
        keep = "TRUE"
    else:
        raise ValueError(f"{config.type}: unknown ignore_row_if {ignore_row_if!r}")
    key = ", ".join(_quote(c) for c in columns)
    [(element_count, considered)] = relation.query(
        _SOURCE, f"SELECT count(*), count(*) FILTER (WHERE {keep}) FROM {_SOURCE}"
    ).fetchall()
    candidates = f"FROM {_SOURCE} WHERE {keep}"
    passes = max(1, math.ceil(considered / set_rows))
    if passes > 1:
        # Only keys whose hash repeats can repeat: the rows are narrowed to those first.
        repeated_hashes(
            lambda sql: relation.query(_SOURCE, sql),
            f"SELECT hash({key}) AS h FROM {_SOURCE} WHERE {keep}",
            _REPEATED_HASHES,
            set_rows,
        )
        candidates += f" AND hash({key}) IN (SELECT h FROM {_REPEATED_HASHES})"
    duplicated = f"{candidates} GROUP BY {key} HAVING count(*) > 1"
    [(unexpected_count,)] = relation.query(
        _SOURCE, f"SELECT coalesce(sum(n), 0)::BIGINT FROM (SELECT count(*) AS n {duplicated})"
    ).fetchall()
    examples: list[Any] = []
    if unexpected_count:
        same_key = " AND ".join(f"n.{_quote(c)} IS NOT DISTINCT FROM d.{_quote(c)}" for c in columns)
        first = relation.query(
            _SOURCE,
            f"""
            WITH n AS (SELECT {key}, row_number() OVER () AS _gx_row FROM {_SOURCE} WHERE {keep}),
                 d AS (SELECT {key} {duplicated})
            SELECT n.* EXCLUDE (_gx_row) FROM n SEMI JOIN d ON {same_key}
            ORDER BY n._gx_row
            LIMIT {EXAMPLE_COUNT}
            """,
        ).to_arrow_table()
        frame = _prepare(table_name, first.to_pandas(), present=relation.columns)
        examples = frame.to_dict("records") if compound else frame[columns[0]].tolist()
    if passes > 1:
        relation.query(_SOURCE, f"DROP TABLE {_REPEATED_HASHES}")
    success = _map_success(config, element_count, considered, unexpected_count)
    details = _map_output(success, element_count, considered, unexpected_count, examples)
    return _outcome(config, success, details, None)


_REPEATED_HASHES = "_gx_repeated_key_hashes"


def validate_relation(
    table_name: str,
    relation: duckdb.DuckDBPyRelation,
    batch_rows: int = BATCH_ROWS,
    set_rows: int = SET_ROWS,
) -> SuiteResult:
    """Validate the rows of `relation` (a raw extract table, lineage columns included) with its suite.

    The same result as `validate(table_name, <the relation as one pandas frame>)` (verdicts,
    counts, percentages, examples), in memory that does not grow with the relation:
    - schema expectations (a column exists) run once, in GX, on a zero-row frame of the
      relation's columns;
    - row-wise expectations run in GX on each batch of at most `batch_rows` rows (read from
      DuckDB as Arrow record batches, only the columns they read, made pandas one batch at a
      time); counts, percentages, verdicts (`mostly` over all rows) and examples are added up
      over the batches (`_MapTally`);
    - uniqueness is counted by DuckDB over the whole relation, about `set_rows` keys per pass
      (`_set_outcome`): GX on pandas would need every key of the partition in one frame.
    The relation is read once for the batches and a few times per uniqueness expectation. It
    must give its rows in the same order each time: a single table or view filtered with WHERE
    does (DuckDB keeps the order through filters and projections), a join may not. With another
    order only the examples of uniqueness failures could differ from the batches' order.
    """
    if batch_rows < 1 or set_rows < 1:
        raise ValueError(f"batch_rows and set_rows must be positive, not {batch_rows} and {set_rows}")
    validator = _validator()
    plan = validator.plan(table_name)
    present = list(relation.columns)
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}

    outcomes: dict[int, ExpectationOutcome] = {}
    schema_frame = _prepare(table_name, relation.limit(0).to_arrow_table().to_pandas())
    for result in validator.run(plan, plan.schema_suite, schema_frame):
        config = result.expectation_config
        position = plan.positions[config.id]
        if config.type in SET_EXPECTATIONS and _exception_message(result.exception_info) is None:
            try:
                outcomes[position] = _set_outcome(table_name, config, relation, types, set_rows)
            except duckdb.Error as error:
                # Reported like an expectation GX could not run, so the others still are.
                exception_info = {"raised_exception": True, "exception_message": str(error)}
                outcomes[position] = _outcome(config, False, {}, exception_info)
        else:
            # A schema expectation, or a uniqueness one that cannot run (a missing column).
            outcomes[position] = _result_outcome(result)

    tallies: dict[str, _MapTally] = {}
    read = [c for c in present if plan.row_columns is None or c in plan.row_columns] or present[:1]
    n_rows = 0
    batches = 0
    with relation.project(", ".join(_quote(c) for c in read)).to_arrow_reader(
        batch_size=batch_rows
    ) as reader:
        for record_batch in reader:
            for offset in range(0, record_batch.num_rows, batch_rows):
                piece = record_batch.slice(offset, batch_rows)
                frame = _prepare(table_name, _to_pandas(table_name, piece), present=present)
                for result in validator.run(plan, plan.row_suite, frame):
                    config = result.expectation_config
                    tallies.setdefault(config.id, _MapTally(config)).add(result)
                n_rows += piece.num_rows
                batches += 1
                del frame, piece
            del record_batch
    if batches == 0:
        # No rows: GX's verdicts on an empty frame, as on an empty partition.
        for result in validator.run(plan, plan.row_suite, schema_frame):
            tallies.setdefault(result.expectation_config.id, _MapTally(result.expectation_config)).add(result)
    for expectation_id, tally in tallies.items():
        outcomes[plan.positions[expectation_id]] = tally.outcome()
    return _suite_result(table_name, n_rows, [outcomes[p] for p in sorted(outcomes)])


def to_records(result: SuiteResult) -> list[dict[str, Any]]:
    """One flat dict per expectation, ready to insert into a data-quality table.

    Keys: table_name, expectation, columns, severity, rule, success, unexpected_count,
    unexpected_percent, examples_json, observed_json. `observed_json` carries the observed value,
    or `{"exception": message}` when the expectation could not run, or None.
    """
    records = []
    for outcome in result.results:
        observed = outcome.observed
        if observed is None and outcome.exception is not None:
            observed = {"exception": outcome.exception}
        records.append(
            {
                "table_name": result.table_name,
                "expectation": outcome.expectation,
                "columns": outcome.columns,
                "severity": outcome.severity,
                "rule": outcome.rule,
                "success": outcome.success,
                "unexpected_count": outcome.unexpected_count,
                "unexpected_percent": outcome.unexpected_percent,
                "examples_json": json.dumps(outcome.examples),
                "observed_json": None if observed is None else json.dumps(observed),
            }
        )
    return records
