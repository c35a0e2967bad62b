"""Loading the daily layout folder by folder, latest version per key, gives the dump layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from data.contract import load_contract
from data.generator.reader import latest_per_key, read_all

TABLES = list(load_contract().tables)


@pytest.mark.parametrize("table", TABLES)
def test_latest_per_key_of_daily_equals_dump(table: str, daily_csv: tuple, dump_csv: tuple) -> None:
    daily_rows, daily_bad = read_all(daily_csv[0], table)
    dump_rows, dump_bad = read_all(dump_csv[0], table)
    assert sum(map(len, daily_bad.values())) == sum(map(len, dump_bad.values()))
    assert_frame_equal(latest_per_key(daily_rows, table), latest_per_key(dump_rows, table))


def test_daily_layout_really_carries_versions(daily_csv: tuple) -> None:
    rows, _ = read_all(daily_csv[0], "deals")
    assert rows["_extract_date"].n_unique() >= 10
    later = rows.filter(rows["_extract_date"] > rows["_extract_date"].min())
    assert (
        later["deal_id"]
        .is_in(rows.filter(rows["_extract_date"] == rows["_extract_date"].min())["deal_id"])
        .any()
    )


def test_same_defects_in_both_layouts(daily_csv: tuple, dump_csv: tuple) -> None:
    def summary(manifest: object) -> list[tuple]:
        return [
            (d.defect_class, d.table, d.count, d.keys, d.related)
            for d in manifest.defects
            if d.rule != "none"
        ]

    assert summary(daily_csv[1]) == summary(dump_csv[1])


def test_row_locations_point_at_the_keys(daily_csv: tuple) -> None:
    out, manifest = daily_csv
    for defect in manifest.defects:
        if defect.level != "row":
            continue
        assert len(defect.rows) == defect.count, defect.defect_class
        for loc in defect.rows:
            line = (
                Path(out, "extracts", loc["extract_date"], loc["file"])
                .read_text(encoding="utf-8")
                .split("\n")
            )
            assert line[loc["row"]].startswith(loc["key"] + ","), (defect.defect_class, loc)
