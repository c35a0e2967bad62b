from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from data.contract import Contract, load_contract
from ingestion.warehouse import DuckDBSettings, connect, ensure_schemas

LOADED_AT = datetime(2026, 11, 27, 6, 0)


def deal(**overrides: str) -> dict[str, str]:
    row = {
        "deal_id": "D1",
        "client_id": "C1",
        "business_line": "software",
        "owner_id": "O1",
        "source_channel": "inbound",
        "amount": "1000",
        "currency": "EUR",
        "created_at": "2026-01-01T10:00:00Z",
        "expected_close_date": "2026-03-01",
        "status": "open",
        "lost_reason": "",
        "closed_at": "",
        "is_deleted": "false",
        "updated_at": "2026-01-01T10:00:00Z",
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = header or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def contract() -> Contract:
    return load_contract()


@pytest.fixture
def conn(tmp_path, contract):
    with connect(DuckDBSettings(tmp_path / "warehouse.duckdb", memory_limit="1GB", threads=1)) as connection:
        ensure_schemas(connection, contract)
        yield connection


def load_landing(conn, contract: Contract, landing: Path) -> None:
    """Load every extract folder of a landing directory, then the integrity rules, as the assets do."""
    from ingestion.integrity import refresh_integrity_issues
    from ingestion.load import load_extract_table

    for folder in sorted(p for p in landing.iterdir() if p.is_dir()):
        extract_date = datetime.strptime(folder.name, "%Y-%m-%d").date()
        for table in contract.tables.values():
            load_extract_table(conn, table, landing, extract_date, LOADED_AT)
    refresh_integrity_issues(conn, contract, LOADED_AT)
