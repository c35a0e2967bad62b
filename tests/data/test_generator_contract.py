"""Every generated file carries exactly the contract's columns, in order, with the right types."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from data.contract import load_contract
from data.generator.writer import _PARQUET_TYPES

CONTRACT = load_contract()


@pytest.mark.parametrize("fixture", ["daily_csv", "dump_csv", "daily_mixed"])
def test_every_file_has_the_contract_columns(fixture: str, request: pytest.FixtureRequest) -> None:
    out, _ = request.getfixturevalue(fixture)
    files = sorted(Path(out).glob("extracts/*/*"))
    assert {f.stem for f in files} == set(CONTRACT.tables)
    for path in files:
        table = CONTRACT.table(path.stem)
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                assert next(csv.reader(fh)) == table.column_names, path
        else:
            schema = pl.read_parquet_schema(path)
            assert list(schema) == table.column_names, path
            for col in table.columns:
                assert schema[col.name] == _PARQUET_TYPES[col.type], (path, col.name)


def test_mixed_format_splits_by_source(daily_mixed: tuple[Path, object]) -> None:
    out, _ = daily_mixed
    for path in Path(out).glob("extracts/*/*"):
        expected = ".csv" if CONTRACT.table(path.stem).source == "crm" else ".parquet"
        assert path.suffix == expected, path


def test_daily_layout_folders(daily_csv: tuple[Path, object]) -> None:
    out, manifest = daily_csv
    folders = sorted(p.name for p in Path(out, "extracts").iterdir())
    assert folders[0] == manifest.config["dump_date"] and folders[-1] == manifest.config["end_date"]
    assert len(folders) == manifest.config["daily_days"] + 1
    dump = set(p.stem for p in Path(out, "extracts", folders[0]).iterdir())
    assert dump == set(CONTRACT.tables)
    assert "targets" not in {p.stem for f in folders[1:3] for p in Path(out, "extracts", f).iterdir()}
