"""Float sums that come out the same bit for bit on every run.

A float sum in a Polars group-by or window is combined from per-thread partial sums in whatever order the
threads finish (and the rows of a group come in whatever order the joins before it left them), so its
last bits wander from run to run. A sum of integers is exact in any order: `exact_sum` rounds each value to
1/scale, sums the integers and divides once. An engineer re-running a day then gets the same figures, and
a republished table changes only where its figures did.
"""

from __future__ import annotations

import polars as pl


def exact_sum(expr: pl.Expr, scale: float) -> pl.Expr:
    """Sum of `expr` rounded to 1/scale, the same bit for bit on every run.

    The integers are 128-bit: at a scale of 1e12 a sum reaches 1.7e26 before it could overflow, far beyond
    any count, hours or amount here. Probabilities use 1e12, money cents (100)."""
    return (expr * scale).round().cast(pl.Int128).sum() / scale


def _factor(scale: float) -> str:
    return f"cast({float(scale)!r} as double)"


def exact_units_sql(expr: str, scale: float, where: str | None = None) -> str:
    """SQL: the sum of `expr` (over the rows `where` holds) in units of 1/scale, each value rounded half
    to even (as Polars' `round`): a HUGEINT, exact in any order."""
    only = f" filter (where {where})" if where else ""
    return f"sum(cast(round_even({expr} * {_factor(scale)}, 0) as hugeint)){only}"


def exact_sum_sql(expr: str, scale: float, where: str | None = None) -> str:
    """SQL twin of `exact_sum`: the sum of `expr` (over the rows `where` holds) rounded to 1/scale, as a
    DOUBLE, the same on every run whatever order DuckDB's threads combine their parts in (a sum or avg of
    doubles, even `fsum`'s, is not). Null over no non-null value, as `sum`."""
    return f"(cast({exact_units_sql(expr, scale, where)} as double) / {_factor(scale)})"


def exact_avg_sql(expr: str, scale: float, where: str | None = None) -> str:
    """SQL: the mean of the non-null `expr` (over the rows `where` holds), from `exact_sum_sql`."""
    only = f" filter (where {where})" if where else ""
    return f"({exact_sum_sql(expr, scale, where)} / count({expr}){only})"
