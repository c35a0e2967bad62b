"""The extract contract: loads `contract.yaml`, the single source of truth for what the pipeline accepts.

Ingestion validates files against it, the Great Expectations suites are built from it, and
`data/README.md` is generated from it (`python -m data.contract --write-docs`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

CONTRACT_PATH = Path(__file__).with_name("contract.yaml")
README_PATH = Path(__file__).with_name("README.md")

# How each contract type is stored in DuckDB. Money and prices are exact decimals.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "decimal": "DECIMAL(18,4)",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    required: bool = True
    nullable: bool = True
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.type]


@dataclass(frozen=True)
class RowRule:
    """A rule on one row: rows for which `when` (a SQL predicate over the typed columns) is true break it."""

    rule: str
    when: str
    reason: str


@dataclass(frozen=True)
class Table:
    name: str
    source: str
    description: str
    grain: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    version_column: str | None = None
    row_rules: tuple[RowRule, ...] = field(default_factory=tuple)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r} in the contract")

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.required]


@dataclass(frozen=True)
class Contract:
    version: str
    reporting_currency: str
    landing_layout: str
    tables: dict[str, Table]

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r} in the extract contract {self.version}") from None


def _column(name: str, spec: dict) -> Column:
    if spec["type"] not in DUCKDB_TYPES:
        raise ValueError(f"column {name!r}: unknown type {spec['type']!r}")
    allowed = spec.get("allowed")
    return Column(
        name=name,
        type=spec["type"],
        description=spec.get("description", ""),
        required=spec.get("required", True),
        nullable=spec.get("nullable", True),
        allowed=tuple(allowed) if allowed is not None else None,
        min=spec.get("min"),
        max=spec.get("max"),
    )


def parse_contract(raw: dict) -> Contract:
    tables = {}
    for table_name, spec in raw["tables"].items():
        columns = tuple(_column(name, col) for name, col in spec["columns"].items())
        table = Table(
            name=table_name,
            source=spec["source"],
            description=spec["description"],
            grain=spec["grain"],
            primary_key=tuple(spec["primary_key"]),
            columns=columns,
            version_column=spec.get("version_column"),
            row_rules=tuple(RowRule(**rule) for rule in spec.get("row_rules", [])),
        )
        for key in (*table.primary_key, *([table.version_column] if table.version_column else [])):
            table.column(key)  # fails loudly on a key that names no column
        tables[table_name] = table
    return Contract(
        version=str(raw["version"]),
        reporting_currency=raw["reporting_currency"],
        landing_layout=raw["landing_layout"],
        tables=tables,
    )


@cache
def load_contract(path: Path = CONTRACT_PATH) -> Contract:
    return parse_contract(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def render_markdown(contract: Contract) -> str:
    """The human-readable contract; `data/README.md` is exactly this text."""
    lines = [
        "# The extract contract",
        "",
        f"Version **{contract.version}**. Generated from `data/contract.yaml` by",
        "`python -m data.contract --write-docs`; do not edit by hand (a test compares the two).",
        "",
        f"- Landing layout: `{contract.landing_layout}`. One folder per extract date; CSV (header row,",
        "  UTF-8, comma separated) and Parquet are both accepted, per file.",
        "- A daily extract carries new and changed rows; the latest version of a key wins (latest",
        "  extract date, then the table's version column). One extract date may instead carry a full",
        "  history dump: every figure uses event times, so the result is the same.",
        "- Timestamps are ISO 8601; a value with an offset is converted to UTC, one without is UTC.",
        "- A row that breaks a rule below goes to `quality.quarantine` with the rule and its original",
        "  values. A file that cannot be read, or lacks a required column, fails its partition.",
        f"- Reporting currency: {contract.reporting_currency}.",
        "",
    ]
    for table in contract.tables.values():
        lines += [
            f"## `{table.name}` ({table.source})",
            "",
            table.description,
            "",
            f"- Grain: {table.grain}.",
            f"- Key: `{', '.join(table.primary_key)}`"
            + (f"; versions ordered by `{table.version_column}`." if table.version_column else "."),
            "",
            "| column | type | required | nullable | rule | description |",
            "|---|---|---|---|---|---|",
        ]
        for col in table.columns:
            rules = []
            if col.allowed:
                rules.append("one of " + ", ".join(f"`{v}`" for v in col.allowed))
            if col.min is not None:
                rules.append(f">= {col.min:g}")
            if col.max is not None:
                rules.append(f"<= {col.max:g}")
            lines.append(
                f"| `{col.name}` | {col.type} | {'yes' if col.required else 'no'} | "
                f"{'yes' if col.nullable else 'no'} | {'; '.join(rules)} | {col.description} |"
            )
        if table.row_rules:
            lines += ["", "Row rules (a row for which the condition holds is quarantined):", ""]
            lines += [f"- `{r.rule}`: `{r.when}`: {r.reason}." for r in table.row_rules]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {README_PATH.name}")
    args = parser.parse_args()
    text = render_markdown(load_contract())
    if args.write_docs:
        README_PATH.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
