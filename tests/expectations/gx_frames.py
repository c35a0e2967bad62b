"""Small valid raw frames per contract table, typed the way ingestion hands them over (via Arrow).

`valid_frame(table)` builds three rows that satisfy every expectation of the table's suite, with
the lineage columns ingestion adds. `flavour` picks how Arrow becomes pandas: "numpy" (default
`to_pandas()`: object decimals and dates, float ints with nulls), "arrow" (ArrowDtype columns) or
"nullable" (pandas Int64 / boolean / string extension dtypes).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa

from data.contract import Column, load_contract

N_ROWS = 3
T0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC)
D0 = dt.date(2024, 3, 1)

ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "decimal": pa.decimal128(18, 4),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

LINEAGE = {
    "_extract_date": (pa.date32(), [dt.date(2024, 6, 1)] * N_ROWS),
    "_source_file": (pa.string(), ["landing/2024-06-01/x.csv"] * N_ROWS),
    "_source_row": (pa.int64(), list(range(1, N_ROWS + 1))),
    "_loaded_at": (pa.timestamp("us", tz="UTC"), [dt.datetime(2024, 6, 1, 6, tzinfo=dt.UTC)] * N_ROWS),
}

# Values the generic generator cannot guess: row rules and cross-column consistency.
OVERRIDES: dict[str, dict[str, list[Any]]] = {
    "deals": {
        "status": ["open", "won", "lost"],
        "amount": [None, Decimal("12000.50"), Decimal("800")],
        "closed_at": [None, T0 + dt.timedelta(days=20), T0 + dt.timedelta(days=30)],
        "lost_reason": [None, None, "price"],
        "currency": ["EUR", "USD", "EUR"],
    },
    "invoices": {
        "is_credit_note": [False, False, True],
        "original_invoice_id": [None, None, "invoice_id-0"],
        "currency": ["EUR", "EUR", "GBP"],
    },
    "invoice_lines": {
        "quantity": [Decimal("2"), Decimal("1.5"), Decimal("-1")],
        "unit_price": [Decimal("90"), Decimal("100"), Decimal("90")],
        "list_price": [Decimal("100"), Decimal("100"), Decimal("100")],
        "unit_cost": [Decimal("60"), Decimal("70"), Decimal("60")],
    },
    "stage_catalogue": {
        "is_won": [False, True, False],
        "is_lost": [False, False, True],
        "probability": [0.2, 1.0, 0.0],
        "sla_days": [14, None, None],
    },
    "fx_rates": {"currency": ["USD", "GBP", "CHF"]},
    "targets": {
        "period_end": [D0 + dt.timedelta(days=30 + i) for i in range(N_ROWS)],
        "revenue_target": [Decimal("100000"), Decimal("0"), Decimal("2500.25")],
    },
}


def _values(column: Column) -> list[Any]:
    """Distinct valid values for a column of the given contract type, within its range."""
    rows = range(N_ROWS)
    if column.allowed:
        return [column.allowed[i % len(column.allowed)] for i in rows]
    low = column.min if column.min is not None else 0
    match column.type:
        case "string":
            return [f"{column.name}-{i}" for i in rows]
        case "integer":
            return [int(low) + i for i in rows]
        case "decimal":
            return [Decimal(str(low)) + Decimal("10.25") * (i + 1) for i in rows]
        case "double":
            high = column.max if column.max is not None else low + 10
            return [low + (high - low) * (i + 1) / (N_ROWS + 1) for i in rows]
        case "boolean":
            return [False] * N_ROWS
        case "date":
            return [D0 + dt.timedelta(days=i) for i in rows]
        case "timestamp":
            return [T0 + dt.timedelta(days=i) for i in rows]
    raise ValueError(f"unknown contract type {column.type!r}")


def valid_table(table_name: str) -> pa.Table:
    """The valid rows as an Arrow table typed from the contract, lineage columns appended."""
    table = load_contract().table(table_name)
    overrides = OVERRIDES.get(table_name, {})
    arrays, names = [], []
    for column in table.columns:
        arrays.append(pa.array(overrides.get(column.name, _values(column)), ARROW_TYPES[column.type]))
        names.append(column.name)
    for name, (arrow_type, values) in LINEAGE.items():
        arrays.append(pa.array(values, arrow_type))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def to_pandas(table: pa.Table, flavour: str = "numpy") -> pd.DataFrame:
    """Arrow to pandas the two ways ingestion may do it."""
    if flavour == "arrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    if flavour == "numpy":
        return table.to_pandas()
    if flavour == "nullable":
        nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}
        return table.to_pandas(types_mapper=nullable.get)
    raise ValueError(f"unknown flavour {flavour!r}")


def valid_frame(table_name: str, flavour: str = "numpy") -> pd.DataFrame:
    """A valid pandas frame for `table_name` (see the module docstring for `flavour`)."""
    return to_pandas(valid_table(table_name), flavour)
