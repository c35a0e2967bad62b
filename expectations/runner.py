"""Run a table's suite on a pandas frame and return plain, JSON-able results.

`validate(table_name, frame)` is what the Dagster asset checks call, once per table per run. The
GX context, data source and suites are built once per process and reused; nothing is written to
disk (in-memory stores, no data docs, no analytics, no progress bars).

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
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import pandas_execution_engine

from data.contract import load_contract
from expectations.contract_suite import ERROR

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
        self._tables: dict[str, tuple[Any, gx.ExpectationSuite]] = {}
        # GX contexts are not documented as thread-safe; validation is GIL-bound pandas work
        # anyway, so serialising it costs little and keeps a threaded executor safe.
        self._lock = threading.Lock()

    def _table(self, table_name: str) -> tuple[Any, gx.ExpectationSuite]:
        if table_name not in self._tables:
            suite = self._context.suites.add(build_suite(table_name))
            asset = self._source.add_dataframe_asset(name=table_name)
            batch_definition = asset.add_batch_definition_whole_dataframe(name=table_name)
            self._tables[table_name] = (batch_definition, suite)
        return self._tables[table_name]

    def validate(self, table_name: str, frame: pd.DataFrame) -> tuple[Any, gx.ExpectationSuite]:
        with self._lock:
            batch_definition, suite = self._table(table_name)
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
            return batch.validate(suite, result_format=RESULT_FORMAT), suite


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


def _prepare(table_name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the suite validates it; the caller's frame is never modified.

    - Optional contract columns (`required: false`) the file omitted are added as all-null: the
      contract lets a file leave them out, so expectations on them see nulls rather than failing
      for a missing column. Missing required columns stay missing so `column_present` fails.
    - Numeric contract columns (decimal, integer, double) become float64, for speed (see
      NUMERIC_TYPES). The checks stay exact where it matters: DECIMAL(18,4) values keep their
      sign and order in float64 (15-16 significant digits), and the bounds are small constants.
      Example values of such columns are reported as floats.
    """
    table = load_contract().table(table_name)
    changes: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name not in frame.columns:
            if not column.required:
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


def _outcome(result: Any) -> ExpectationOutcome:
    config = result.expectation_config
    expectation_meta = config.meta or {}
    details = result.result or {}
    exception = _exception_message(result.exception_info)
    unexpected_count = details.get("unexpected_count")
    unexpected_percent = details.get("unexpected_percent")
    return ExpectationOutcome(
        expectation=config.type,
        columns=_columns(config.kwargs),
        # An expectation without severity fails closed: it is treated as an error.
        severity=expectation_meta.get("severity", ERROR),
        rule=expectation_meta.get("rule", config.type),
        success=bool(result.success) and exception is None,
        unexpected_count=None if unexpected_count is None else int(unexpected_count),
        unexpected_percent=_jsonable(unexpected_percent),
        examples=_jsonable(list(details.get("partial_unexpected_list") or [])[:EXAMPLE_COUNT]),
        observed=_jsonable(details.get("observed_value")),
        exception=exception,
    )


def validate(table_name: str, frame: pd.DataFrame) -> SuiteResult:
    """Validate `frame` (a raw extract table as pandas, lineage columns included) with its suite.

    Results come in the suite's order. Numeric columns are validated as float64 (see
    `_prepare`): GX handles Decimal and Arrow columns correctly but value by value, which is slow.
    """
    validation, suite = _validator().validate(table_name, _prepare(table_name, frame))
    order = {expectation.id: position for position, expectation in enumerate(suite.expectations)}
    results = sorted(validation.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    outcomes = [_outcome(r) for r in results]
    success = all(o.success for o in outcomes if o.severity == ERROR)
    return SuiteResult(table_name=table_name, success=success, n_rows=len(frame), results=outcomes)


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
