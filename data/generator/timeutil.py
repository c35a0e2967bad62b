"""Small helpers for epoch-second arithmetic and id formatting shared by the simulation modules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl

DAY = 86_400.0


def epoch(d: date) -> int:
    """Epoch seconds of midnight UTC at the start of a date."""
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def to_timestamp(seconds: np.ndarray | pl.Series) -> pl.Series:
    """Epoch seconds as a `Datetime(us, UTC)` series."""
    s = pl.Series(np.asarray(seconds, dtype=np.int64) * 1_000_000)
    return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def to_date(seconds: np.ndarray) -> pl.Series:
    """Epoch seconds as a `Date` series (the UTC day)."""
    return pl.Series((np.asarray(seconds, dtype=np.int64) // 86_400).astype(np.int32)).cast(pl.Date)


def ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """Zero-padded string keys such as `D0000042`."""
    return prefix + pl.Series(np.asarray(numbers, dtype=np.int64)).cast(pl.String).str.zfill(width)


def labels(values: tuple[str, ...] | list[str], index: np.ndarray) -> pl.Series:
    """Map integer codes to their string labels."""
    return pl.Series(np.asarray(values, dtype=object)[np.asarray(index)], dtype=pl.String)
