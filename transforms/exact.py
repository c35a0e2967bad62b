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
