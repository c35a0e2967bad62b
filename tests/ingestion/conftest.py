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
