"""Sharded generation: K worlds of scale / K with disjoint keys, one file per folder and table, a manifest
that describes the concatenated files, and what ingestion quarantines and flags is what it declares."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from data.contract import load_contract
from data.generator import GeneratorConfig, Manifest, Params, generate
from data.generator.reader import latest_per_key, read_all, table_files
from data.generator.shards import FAKE_BASE, IdOffsets, IdUsage, _sum_targets, advance
from data.generator.writer import _PARQUET_TYPES
from tests.data.test_generator_defects import EXPECTED_CLASSES, observed

CONTRACT = load_contract()
SCALE = 0.01
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SAMPLE_CONFIG = dict(scale=0.02, seed=7, layout="daily", format="mixed", daily_days=14)  # `make sample`
ENTITY_KEYS = {
    "clients": "client_id",
    "owners": "owner_id",
    "deals": "deal_id",
    "deal_stage_history": "event_id",
    "activities": "activity_id",
    "invoices": "invoice_id",
    "invoice_lines": "invoice_line_id",
}


def _make(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: object) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp(name)
    return out, generate(GeneratorConfig(**kwargs), out)


@pytest.fixture(scope="session")
def sharded_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Three shards of 1/300, daily layout over 14 days, CSV, every defect class."""
    return _make(
        tmp_path_factory, "sharded_csv", scale=SCALE, seed=11, format="csv", defect_rate=0.01, shards=3
    )


@pytest.fixture(scope="session")
def sharded_mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Two shards, CRM tables as CSV and invoicing and planning as Parquet, one new day (as the benchmark)."""
    return _make(
        tmp_path_factory, "sharded_mixed", scale=SCALE, seed=5, format="mixed", daily_days=1, shards=2
    )


def _file_rows(path: Path) -> int:
    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh:
        return sum(1 for _ in fh) - 1  # no field holds a line break


@pytest.mark.parametrize("fixture", ["sharded_csv", "sharded_mixed"])
def test_row_counts_in_the_manifest_are_the_files(fixture: str, request: pytest.FixtureRequest) -> None:
    out, manifest = request.getfixturevalue(fixture)
    files = {(p.parent.name, p.stem): _file_rows(p) for p in Path(out).glob("extracts/*/*")}
    declared = {(day, t): n for t, per_day in manifest.row_counts.items() for day, n in per_day.items()}
    assert files == declared
    assert manifest.config["shards"] == int(fixture == "sharded_csv") + 2
    assert not Path(out, ".shard").exists()


@pytest.mark.parametrize("fixture", ["sharded_csv", "sharded_mixed"])
def test_every_file_has_the_contract_columns(fixture: str, request: pytest.FixtureRequest) -> None:
    out, _ = request.getfixturevalue(fixture)
    for path in Path(out).glob("extracts/*/*"):
        table = CONTRACT.table(path.stem)
        if path.suffix == ".csv":
            assert path.read_text(encoding="utf-8").split("\n", 1)[0] == ",".join(table.column_names)
        else:
            schema = pl.read_parquet_schema(path)
            assert schema == {c.name: _PARQUET_TYPES[c.type] for c in table.columns}, path


def test_entity_keys_are_unique_across_shards(sharded_csv: tuple[Path, Manifest]) -> None:
    out, manifest = sharded_csv
    p, k = Params(), 3
    # Clients and owners per shard follow from the params alone: each shard brings its own.
    per_shard_clients = max(60, round(p.clients_per_sf * SCALE / k))
    per_shard_owners = sum(max(p.min_owners_per_line, round(b * SCALE / k)) for b in p.owners_per_line_sf1)
    rows = {t: read_all(out, t)[0] for t in ENTITY_KEYS}
    assert rows["clients"]["client_id"].n_unique() == k * per_shard_clients
    assert rows["owners"]["owner_id"].n_unique() == k * per_shard_owners
    assert len(manifest.ground_truth["owner_effort_per_deal"]) == k * per_shard_owners
    # Unversioned entities: each key on one line, but the lines the manifest says were duplicated.
    duplicated = {d.table: d.count for d in manifest.defects if d.defect_class == "duplicate_row"}
    for table in ("deal_stage_history", "activities", "invoices", "invoice_lines"):
        key = ENTITY_KEYS[table]
        assert rows[table].height - rows[table][key].n_unique() == duplicated.get(table, 0), table
    # Versioned deals: every version of a key is the same deal (same creation time, line and channel).
    deals = rows["deals"]
    same = deals.group_by("deal_id").agg(
        pl.col("created_at", "business_line", "source_channel").n_unique().max()
    )
    assert same.filter(pl.col("created_at") > 1).height == 0
    # References stay inside their shard: a stage event's pipeline is its deal's business line, an
    # activity's client is its deal's client, every deal's owner sells the deal's business line.
    latest = {t: latest_per_key(rows[t], t) for t in ("deals", "deal_stage_history", "activities", "owners")}
    ev = latest["deal_stage_history"]
    joined = ev.join(latest["deals"], on="deal_id")
    assert joined.height == ev.height
    assert (joined["pipeline_id"] == joined["business_line"]).all()
    unknown_deal = {k for d in manifest.defects if d.defect_class == "unknown_deal" for k in d.keys}
    unknown_client = {k for d in manifest.defects if d.defect_class == "unknown_client" for k in d.keys}
    acts = (
        latest["activities"]
        .filter(~pl.col("activity_id").is_in(list(unknown_deal)))
        .join(latest["deals"].select("deal_id", pl.col("client_id").alias("deal_client")), on="deal_id")
        .filter(~pl.col("deal_id").is_in(list(unknown_client)))
    )
    assert acts.height > 1000 and (acts["client_id"] == acts["deal_client"]).all()
    owners = latest["owners"].select("owner_id", "business_line")
    with_owner = latest["deals"].join(owners, on="owner_id", suffix="_owner")
    assert with_owner.height == latest["deals"].height
    assert (with_owner["business_line"] == with_owner["business_line_owner"]).all()
    numbers = read_all(out, "invoices")[0]["invoice_number"]
    assert numbers.str.contains(r"^(INV|CN)-\d{4}-\d{6,}$").all()


def test_defect_counts_in_the_manifest_are_the_files(sharded_csv: tuple[Path, Manifest]) -> None:
    out, manifest = sharded_csv
    declared = {(d.defect_class, d.table): d.count for d in manifest.defects if d.rule != "none"}
    assert set(declared) == EXPECTED_CLASSES
    assert observed(out) == declared
    for d in manifest.defects:
        assert d.rule == "none" or len(d.keys) == d.count == len(set(map(str, d.keys))), d.defect_class
    planted = [
        k
        for d in manifest.defects
        for k in d.related
        if isinstance(k, str) and k[0] in FAKE_BASE and int(k[1:]) >= FAKE_BASE[k[0]]
    ]
    assert len(planted) == len(set(planted)) > 0


def test_row_locations_point_at_the_keys_in_the_concatenated_files(sharded_csv: tuple) -> None:
    out, manifest = sharded_csv
    checked = set()
    for defect in manifest.defects:
        if defect.level != "row":
            continue
        assert len(defect.rows) == defect.count, defect.defect_class
        for loc in defect.rows:
            lines = Path(out, "extracts", loc["extract_date"], loc["file"]).read_text(encoding="utf-8")
            assert lines.split("\n")[loc["row"]].startswith(loc["key"] + ","), (defect.defect_class, loc)
            checked.add(loc["row"] > manifest.row_counts[defect.table][loc["extract_date"]] // 2)
    assert checked == {True, False}  # rows in the first and in the last shards' part of a file


def test_tables_that_do_not_grow_are_written_once(sharded_mixed: tuple, tmp_path: Path) -> None:
    out, manifest = sharded_mixed
    single = generate(GeneratorConfig(scale=SCALE, seed=5, format="mixed", daily_days=1), tmp_path / "single")
    for table in ("fx_rates", "stage_catalogue"):
        assert manifest.row_counts[table] == single.row_counts[table], table
        for path in table_files(out, table):
            twin = tmp_path / "single" / "extracts" / path.parent.name / path.name
            assert path.read_bytes() == twin.read_bytes(), path
    targets = latest_per_key(read_all(out, "targets")[0], "targets")
    assert targets.height == 108  # 9 quarters x 3 lines x 4 segments, each once
    assert (targets["revenue_target"].cast(pl.Float64) % 100 == 0).all()
    assert targets["revenue_target"].cast(pl.Float64).sum() > 0


def test_targets_are_summed_per_key_and_version() -> None:
    def shard(goal: float, revised: float) -> pl.DataFrame:
        # One key with its first version (6:00 on the dump day) and a revision.
        return pl.DataFrame(
            {
                "period_start": [datetime(2027, 1, 1).date()] * 2,
                "business_line": ["software"] * 2,
                "revenue_target": [goal, revised],
                "_known_at": [100, 200],
            }
        )

    summed = _sum_targets([shard(1000.0, 900.0), shard(300.0, 200.0), shard(0.0, 0.0)])
    assert summed.columns == ["period_start", "business_line", "revenue_target", "_known_at"]
    assert summed["revenue_target"].to_list() == [1300.0, 1100.0]
    assert summed["_known_at"].to_list() == [100, 200]


@pytest.mark.parametrize("fixture", ["sharded_csv", "sharded_mixed"])
def test_ingestion_quarantines_and_flags_exactly_the_manifest(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from ingestion.warehouse import DuckDBSettings, connect, ensure_schemas
    from tests.ingestion.conftest import load_landing
    from tests.ingestion.test_generated_extracts import counts_by_rule

    out, _ = request.getfixturevalue(fixture)
    manifest = json.loads(Path(out, "manifest.json").read_text())
    with connect(DuckDBSettings(tmp_path / "w.duckdb", memory_limit="1GB", threads=1)) as conn:
        ensure_schemas(conn, CONTRACT)
        load_landing(conn, CONTRACT, Path(out, "extracts"))
        quarantined = counts_by_rule(conn, "quality.quarantine")
        findings = counts_by_rule(conn, "quality.integrity_issues")
        flagged = {
            (t, r): set(k)
            for t, r, k in conn.sql(
                "SELECT table_name, rule, list(record_key) FROM quality.integrity_issues GROUP BY ALL"
            ).fetchall()
        }
    checked = 0
    for defect in manifest["defects"]:
        key = (defect["table"], defect["rule"])
        if defect["level"] == "row":
            assert quarantined.get(key, 0) == defect["count"], key
            checked += 1
        elif defect["level"] == "cross_table":
            assert findings.get(key, 0) == defect["count"], key
            expected = {"|".join(k) if isinstance(k, list) else k for k in defect["keys"]}
            assert flagged.get(key, set()) == expected, key
            checked += 1
    assert checked >= 20
    injected = {(d["table"], d["rule"]) for d in manifest["defects"]}
    unexplained = {k for k in (*quarantined, *findings) if k not in injected and "quarantined_" not in k[1]}
    assert unexplained == set()


def test_same_seed_same_bytes_when_sharded(tmp_path: Path) -> None:
    cfg = GeneratorConfig(scale=0.006, seed=3, format="mixed", daily_days=2, shards=2)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 15
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_one_shard_writes_the_embedded_sample_byte_for_byte(tmp_path: Path) -> None:
    manifest = generate(GeneratorConfig(shards=1, **SAMPLE_CONFIG), tmp_path)
    assert "shards" not in manifest.config
    ours = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*") if p.is_file() and p.name != "README.md")
    assert ours == theirs
    for rel in ours:
        assert (tmp_path / rel).read_bytes() == (SAMPLE / rel).read_bytes(), rel


def test_keys_shift_past_earlier_shards_and_planted_keys_apart() -> None:
    offsets = IdOffsets()
    advance(
        offsets, IdUsage(real={"C": 60, "D": 400}, fake={"C": 2, "D": 0}, invoice_numbers={"INV-2025": 7})
    )
    assert offsets.key("C0000001") == "C0000061"
    assert offsets.key("C9000000") == "C9000002"  # two unknown clients planted before
    assert offsets.key("D00000400") == "D00000800"
    assert offsets.key("E000000001") == "E000000001"  # no events before
    assert offsets.key(["services", "lead"]) == ["services", "lead"]
    frame = pl.DataFrame({"invoice_number": ["INV-2025-000001", "CN-2025-000001", "INV-2024-000010"]})
    assert frame.select(offsets.invoice_number())["invoice_number"].to_list() == [
        "INV-2025-000008",
        "CN-2025-000001",
        "INV-2024-000010",
    ]


def test_a_scale_whose_keys_do_not_fit_is_refused() -> None:
    offsets = IdOffsets()
    with pytest.raises(ValueError, match="prefix C"):
        advance(offsets, IdUsage(real={"C": FAKE_BASE["C"]}, fake={}, invoice_numbers={}))


def test_shards_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="shards"):
        GeneratorConfig(shards=0)
