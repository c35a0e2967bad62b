"""Run configuration of the generator and the manifest it writes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from data.generator.params import Params

GENERATOR_VERSION = "1.0.0"
LAYOUTS = ("daily", "dump")
FORMATS = ("csv", "parquet", "mixed")


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: size, seed, time span, output layout and format, defect rate."""

    scale: float = 0.02
    seed: int = 7
    end_date: date = date(2026, 11, 26)
    daily_days: int = 14
    layout: str = "daily"
    format: str = "csv"
    defect_rate: float = 0.005
    progress: bool | None = None
    """Show a progress bar on stderr; None means only at scale >= 0.5."""
    params: Params = field(default_factory=Params)
    shards: int = 1
    """Generate the world as this many independent worlds of scale / shards (bounded memory), with
    disjoint identifiers, concatenated per extract folder and table; see `shards.py`."""

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        if not 0.0 <= self.defect_rate < 0.05:
            raise ValueError("defect_rate must be in [0, 0.05)")
        if self.daily_days < 0:
            raise ValueError("daily_days must be >= 0")
        if not isinstance(self.shards, int) or self.shards < 1:
            raise ValueError("shards must be an integer >= 1")

    @property
    def dump_date(self) -> date:
        """Date of the full-history folder of the daily layout (end_date - daily_days)."""
        return self.end_date - timedelta(days=self.daily_days)

    @property
    def start_date(self) -> date:
        """First day of history (history_years before end_date, the day after)."""
        end = self.end_date
        return end.replace(year=end.year - self.params.history_years) + timedelta(days=1)

    @property
    def show_progress(self) -> bool:
        """Whether to draw a progress bar."""
        return self.scale >= 0.5 if self.progress is None else self.progress

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of the configuration (dates as ISO strings, params included).

        `shards` appears only when above 1, so an unsharded manifest is what it always was.
        """
        out = {
            "scale": self.scale,
            "seed": self.seed,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "dump_date": self.dump_date.isoformat(),
            "daily_days": self.daily_days,
            "layout": self.layout,
            "format": self.format,
            "defect_rate": self.defect_rate,
            "decimal_encoding": "csv: fixed 2 decimals; parquet: double",
            "params": dataclasses.asdict(self.params),
        }
        if self.shards > 1:
            out["shards"] = self.shards
        return out


@dataclass
class Defect:
    """One injected defect class on one table."""

    defect_class: str
    rule: str
    table: str
    level: str
    """`row` (quarantined by a row rule), `cross_table` (flagged in integrity) or `none`."""
    count: int
    keys: list[Any] = field(default_factory=list)
    column: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    """For row-level defects: extract_date, file and 1-based data row of each affected line."""
    related: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "class": self.defect_class,
            "rule": self.rule,
            "table": self.table,
            "level": self.level,
            "column": self.column,
            "count": self.count,
            "keys": self.keys,
            "rows": self.rows,
            "related": self.related,
        }


@dataclass
class Manifest:
    """What was generated: version, configuration, row counts, defects and planted ground truth."""

    generator_version: str
    config: dict[str, Any]
    row_counts: dict[str, dict[str, int]]
    """Rows per table and extract date (data rows of the files, defect lines included)."""
    defects: list[Defect]
    ground_truth: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written to manifest.json."""
        return {
            "generator_version": self.generator_version,
            "config": self.config,
            "row_counts": self.row_counts,
            "defects": [d.to_dict() for d in self.defects],
            "ground_truth": self.ground_truth,
        }

    def defect(self, defect_class: str, table: str) -> Defect:
        """The entry of a defect class on a table."""
        return next(d for d in self.defects if d.defect_class == defect_class and d.table == table)
