"""Sharded generation: a world of any scale in bounded memory.

`GeneratorConfig(shards=K)` generates K independent worlds of scale / K, one after the other, each
simulated, injected with defects and written exactly as an unsharded world is, then appended to the
final files: one file per extract folder and table, as without shards. Only one shard is in memory at
a time; Parquet is appended row group by row group (pyarrow), CSV byte for byte (header once).

- Seeds: shard `i` uses the seed `shard_seed(seed, i)` (numpy's SeedSequence of `[seed, i]`). The FX
  rates and the product catalogue come from the base seed's streams, so every shard trades in the
  same currencies at the same rates and sells the same products at the same list prices.
- Identifiers: every shard numbers its entities from 1, so each shard's keys are shifted by the
  largest number the earlier shards used (clients, owners, deals, stage events, activities,
  invoices, invoice lines), invoice numbers per kind and year, and the deliberately unknown
  references of the defects (`C9000000`, `D90000000`, `I900000000` ...) by how many earlier shards
  made. Widths stay as they are (`C` + 7 digits ...): a scale whose keys would not fit is refused.
- Tables that do not grow with the scale are written once: the FX rates (identical in every
  shard) and the stage catalogue (the shard's catalogue that carries the retired `demo` stage, if
  any shard planted it; they are otherwise identical). Revenue targets are summed per key and
  version over the shards (each shard's goals follow its own turnover).
- Owners grow with the scale: each shard has its own (at least `min_owners_per_line` per line), so
  a tiny scale split in many shards has more owners than one world of that scale.
- The manifest describes the concatenated files: row counts summed per table and folder, defect
  counts, keys and related keys concatenated (relabelled), and each located row's number offset by
  the rows that earlier shards put in the same file.

`shards=1` takes the unsharded path (`core.generate`), byte for byte what it always wrote.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from data.contract import load_contract
from data.generator import billing
from data.generator.config import GENERATOR_VERSION, Defect, GeneratorConfig, Manifest
from data.generator.defects import FileMarkers, inject
from data.generator.simulate import rngs, simulate
from data.generator.writer import write_table

ID_COLUMNS: dict[str, dict[str, str]] = {
    "clients": {"client_id": "C", "merged_into_client_id": "C"},
    "owners": {"owner_id": "O"},
    "deals": {"deal_id": "D", "client_id": "C", "owner_id": "O"},
    "deal_stage_history": {"event_id": "E", "deal_id": "D", "changed_by_owner_id": "O"},
    "activities": {"activity_id": "A", "client_id": "C", "deal_id": "D", "owner_id": "O"},
    "invoices": {"invoice_id": "I", "client_id": "C", "deal_id": "D", "original_invoice_id": "I"},
    "invoice_lines": {"invoice_line_id": "L", "invoice_id": "I"},
}
"""Identifier columns per table and the prefix of their keys."""
WIDTHS = {"C": 7, "O": 4, "D": 8, "E": 9, "A": 9, "I": 9, "L": 10}
"""Digits after the prefix (as `timeutil.ids` pads them)."""
FAKE_BASE = {"C": 9_000_000, "D": 90_000_000, "I": 900_000_000}
"""First number of the unknown references the defects plant (see `defects.py`)."""
WRITTEN_ONCE = ("stage_catalogue", "fx_rates", "targets")
_INVOICE_NUMBER_DIGITS = 6
_ZSTD_LEVEL = 3
"""Polars' zstd level: the concatenated files are as compact as one world's."""


def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard `shard` (0-based) of a world generated with `seed`."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, np.uint64)[0])


def _number(col: str) -> pl.Expr:
    return pl.col(col).str.slice(1).cast(pl.Int64)


@dataclasses.dataclass
class IdOffsets:
    """How far the keys of the next shard are shifted: real keys, planted unknown keys, invoice numbers."""

    real: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(WIDTHS, 0))
    fake: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(FAKE_BASE, 0))
    invoice_numbers: dict[str, int] = dataclasses.field(default_factory=dict)
    """`INV-2025` / `CN-2025` -> offset of the sequence number."""

    @property
    def zero(self) -> bool:
        """True for the first shard: nothing to shift."""
        return not any(self.real.values()) and not any(self.fake.values()) and not self.invoice_numbers

    def key(self, key: Any) -> Any:
        """One key (from the manifest or the file markers) shifted; anything else unchanged."""
        if not isinstance(key, str) or len(key) < 2 or key[0] not in WIDTHS or not key[1:].isdigit():
            return key
        prefix, n = key[0], int(key[1:])
        base = FAKE_BASE.get(prefix)
        n += self.fake[prefix] if base is not None and n >= base else self.real[prefix]
        return f"{prefix}{n:0{WIDTHS[prefix]}d}"

    def expr(self, col: str, prefix: str) -> pl.Expr:
        """A key column shifted (nulls stay null)."""
        n = _number(col)
        base = FAKE_BASE.get(prefix)
        if base is None:
            shifted = n + self.real[prefix]
        else:
            shifted = pl.when(n >= base).then(n + self.fake[prefix]).otherwise(n + self.real[prefix])
        return (pl.lit(prefix) + shifted.cast(pl.String).str.zfill(WIDTHS[prefix])).alias(col)

    def invoice_number(self) -> pl.Expr:
        """`INV-2025-000123` with its sequence number shifted by the earlier shards' of kind and year."""
        parts = pl.col("invoice_number").str.split_exact("-", 2)
        series = parts.struct.field("field_0") + "-" + parts.struct.field("field_1")
        seq = parts.struct.field("field_2").cast(pl.Int64)
        offset = series.replace_strict(self.invoice_numbers, default=0, return_dtype=pl.Int64)
        shifted = (seq + offset).cast(pl.String).str.zfill(_INVOICE_NUMBER_DIGITS)
        return (series + "-" + shifted).alias("invoice_number")


@dataclasses.dataclass
class IdUsage:
    """What one shard used, before shifting: the largest real and planted number per prefix."""

    real: dict[str, int]
    fake: dict[str, int]
    invoice_numbers: dict[str, int]


def id_usage(tables: dict[str, pl.DataFrame]) -> IdUsage:
    """The largest key number per prefix (real and planted apart) and invoice sequence per series."""
    real = dict.fromkeys(WIDTHS, 0)
    fake = dict.fromkeys(FAKE_BASE, 0)
    for name, columns in ID_COLUMNS.items():
        frame = tables[name]
        for col, prefix in columns.items():
            if col not in frame.columns:
                continue
            n = frame.select(_number(col)).to_series()
            base = FAKE_BASE.get(prefix)
            if base is None:
                real[prefix] = max(real[prefix], int(n.max() or 0))
                continue
            real[prefix] = max(real[prefix], int(n.filter(n < base).max() or 0))
            planted = n.filter(n >= base)
            if len(planted):
                fake[prefix] = max(fake[prefix], int(planted.max()) - base + 1)
    parts = tables["invoices"]["invoice_number"].str.split_exact("-", 2).struct.unnest()
    per_series = parts.group_by(series=pl.col("field_0") + "-" + pl.col("field_1")).agg(
        pl.col("field_2").cast(pl.Int64).max()
    )
    return IdUsage(real, fake, dict(per_series.iter_rows()))


def advance(offsets: IdOffsets, used: IdUsage) -> None:
    """Move the offsets past what a shard used; refuse keys that no longer fit their width."""
    for prefix, n in used.real.items():
        offsets.real[prefix] += n
        limit = FAKE_BASE.get(prefix, 10 ** WIDTHS[prefix])
        if offsets.real[prefix] >= limit:
            raise ValueError(
                f"keys with prefix {prefix} reach {offsets.real[prefix]}, beyond their {WIDTHS[prefix]} "
                f"digits (or the planted unknown keys from {limit}): the scale is too large"
            )
    for prefix, n in used.fake.items():
        offsets.fake[prefix] += n
        if FAKE_BASE[prefix] + offsets.fake[prefix] >= 10 ** WIDTHS[prefix]:
            raise ValueError(f"planted unknown keys with prefix {prefix} overflow their width")
    for series, n in used.invoice_numbers.items():
        offsets.invoice_numbers[series] = offsets.invoice_numbers.get(series, 0) + n


def relabel(
    tables: dict[str, pl.DataFrame],
    defects: list[Defect],
    marks: FileMarkers,
    ground_truth: dict[str, Any],
    offsets: IdOffsets,
) -> None:
    """Shift every key of one shard (tables, manifest entries, file markers, ground truth) in place."""
    if offsets.zero:
        return
    for name, columns in ID_COLUMNS.items():
        frame = tables[name]
        exprs = [offsets.expr(col, prefix) for col, prefix in columns.items() if col in frame.columns]
        if name == "invoices":
            exprs.append(offsets.invoice_number())
        tables[name] = frame.with_columns(exprs)
    key = offsets.key
    for d in defects:
        d.keys = [key(k) for k in d.keys]
        d.related = [key(k) for k in d.related]
    marks.duplicate = {t: [key(k) for k in ks] for t, ks in marks.duplicate.items()}
    marks.malformed = {t: [key(k) for k in ks] for t, ks in marks.malformed.items()}
    marks.invalid = {t: (col, {key(k): v for k, v in bad.items()}) for t, (col, bad) in marks.invalid.items()}
    marks.located = {where: [key(k) for k in ks] for where, ks in marks.located.items()}
    ground_truth["effort_sink_clients"] = [key(k) for k in ground_truth["effort_sink_clients"]]
    ground_truth["owner_effort_per_deal"] = {
        key(k): v for k, v in ground_truth["owner_effort_per_deal"].items()
    }


class Appender:
    """Appends shard files to the final files, one open Parquet writer per final file, and counts rows."""

    def __init__(self) -> None:
        self.rows: dict[Path, int] = {}
        self._writers: dict[Path, pq.ParquetWriter] = {}

    def append(self, src: Path, dest: Path, n_rows: int) -> int:
        """Append `src` (`n_rows` data rows) to `dest`; return the data rows `dest` held before."""
        before = self.rows.get(dest, 0)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".csv":
            if dest not in self.rows:
                shutil.move(src, dest)
            else:
                with src.open("rb") as fh, dest.open("ab") as out:
                    fh.readline()  # the header, written once
                    shutil.copyfileobj(fh, out, 16 * 2**20)
        else:
            source = pq.ParquetFile(src)
            writer = self._writers.get(dest)
            if writer is None:
                writer = pq.ParquetWriter(
                    dest,
                    source.schema_arrow,
                    compression="zstd",
                    compression_level=_ZSTD_LEVEL,
                    use_dictionary=_dictionary_columns(source),
                )
                self._writers[dest] = writer
            for i in range(source.num_row_groups):
                group = source.read_row_group(i)
                if group.schema != writer.schema:
                    group = group.cast(writer.schema)
                writer.write_table(group)
            source.close()
        self.rows[dest] = before + n_rows
        return before

    def close(self) -> None:
        """Finish every Parquet file (footer written)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _dictionary_columns(source: pq.ParquetFile) -> list[str]:
    """The columns Polars dictionary-encoded (low cardinality): pyarrow would try every column, and
    unique keys and timestamps grow by half when it does."""
    meta = source.metadata
    if meta.num_row_groups == 0:
        return []
    group = meta.row_group(0)
    return [
        group.column(i).path_in_schema
        for i in range(group.num_columns)
        if "RLE_DICTIONARY" in group.column(i).encodings
    ]


def _merge_defects(merged: dict[tuple[str, str], Defect], defects: list[Defect]) -> None:
    for d in defects:
        key = (d.defect_class, d.table)
        if key not in merged:
            merged[key] = dataclasses.replace(d, keys=list(d.keys), related=list(d.related), rows=[])
            continue
        into = merged[key]
        into.count += d.count
        into.keys.extend(d.keys)
        into.related.extend(d.related)


def _sum_targets(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Targets of every shard, summed per key and version (shards share keys and version times)."""
    stacked = pl.concat(frames)
    group = [c for c in stacked.columns if c != "revenue_target"]
    return (
        stacked.group_by(group, maintain_order=True)
        .agg(pl.col("revenue_target").sum())
        .select(stacked.columns)
    )


def generate_sharded(config: GeneratorConfig, out_dir: Path) -> Manifest:
    """Generate `config` as `config.shards` shards into `out_dir` (see the module docstring)."""
    from data.generator.core import shuffled_defect, write_manifest

    contract = load_contract()
    k = config.shards
    extracts, scratch = out_dir / "extracts", out_dir / ".shard"
    for folder in (extracts, scratch):
        if folder.exists():
            shutil.rmtree(folder)
    products = billing.products(config.params, rngs(config.seed)["billing"])
    offsets = IdOffsets()
    appender = Appender()
    merged: dict[tuple[str, str], Defect] = {}
    located: dict[tuple[str, str], list[dict[str, Any]]] = {}
    row_counts: dict[str, dict[str, int]] = {name: {} for name in contract.tables}
    once: dict[str, list[pl.DataFrame]] = {name: [] for name in WRITTEN_ONCE}
    catalogue_defects: list[list[Defect]] = []
    ground_truth: dict[str, Any] = {}
    try:
        with tqdm(total=k, disable=not config.show_progress, desc="generate", unit="shard") as bar:

            def tick(label: str) -> None:
                bar.set_postfix_str(label, refresh=True)

            for shard in range(k):
                cfg = dataclasses.replace(
                    config,
                    scale=config.scale / k,
                    seed=shard_seed(config.seed, shard),
                    shards=1,
                    progress=False,
                )
                rng = rngs(cfg.seed)
                rng["fx"] = rngs(config.seed)["fx"]
                world = simulate(cfg, rng, _labelled(tick, shard), products)
                tables, defects, marks = inject(
                    world.tables, world.events.deal, world.events.stage, cfg, rng["defects"]
                )
                truth = world.ground_truth
                del world
                used = id_usage(tables)
                relabel(tables, defects, marks, truth, offsets)
                advance(offsets, used)
                _merge_truth(ground_truth, truth)
                for name in WRITTEN_ONCE:
                    if name != "fx_rates" or shard == 0:
                        once[name].append(tables.pop(name))
                    else:
                        del tables[name]
                catalogue_defects.append([d for d in defects if d.table == "stage_catalogue"])
                _merge_defects(merged, defects)
                for name, table in contract.tables.items():
                    if name in WRITTEN_ONCE:
                        continue
                    counts, where = write_table(
                        tables.pop(name), table, cfg, scratch, marks, _labelled(tick, shard)
                    )
                    before: dict[str, int] = {}
                    for day, n in counts.items():
                        src = next((scratch / "extracts" / day).glob(f"{name}.*"))
                        before[day] = appender.append(src, extracts / day / src.name, n)
                        row_counts[name][day] = row_counts[name].get(day, 0) + n
                    for what, rows in where.items():
                        located.setdefault(what, []).extend(
                            r | {"row": r["row"] + before[r["extract_date"]]} for r in rows
                        )
                    shutil.rmtree(scratch, ignore_errors=True)
                bar.update()
    finally:
        appender.close()
        shutil.rmtree(scratch, ignore_errors=True)
    # Tables written once: FX rates, one stage catalogue (with the retired stage when a shard planted
    # it: the longest), targets summed.
    chosen = max(range(k), key=lambda i: (once["stage_catalogue"][i].height, -i))
    finals = {
        "stage_catalogue": once["stage_catalogue"][chosen],
        "fx_rates": once["fx_rates"][0],
        "targets": _sum_targets(once["targets"]),
    }
    for d in catalogue_defects[chosen]:  # the catalogue is written once: its defects count once
        merged[(d.defect_class, d.table)] = d
    for name in WRITTEN_ONCE:
        counts, _ = write_table(finals[name], contract.table(name), config, out_dir, FileMarkers(), tick)
        row_counts[name] = counts
    row_counts = {name: dict(sorted(row_counts[name].items())) for name in contract.tables}
    defects = list(merged.values())
    for d in defects:
        d.rows = located.get((d.defect_class, d.table), [])
    defects.append(shuffled_defect(config, row_counts))
    manifest = Manifest(GENERATOR_VERSION, config.to_dict(), row_counts, defects, ground_truth)
    write_manifest(manifest, out_dir)
    return manifest


def _labelled(tick: Callable[[str], Any], shard: int) -> Callable[[str], Any]:
    return lambda label: tick(f"shard {shard + 1}: {label}")


def _merge_truth(into: dict[str, Any], truth: dict[str, Any]) -> None:
    """Ground truth of the union: planted clients and owners of every shard; the params' figures once."""
    if not into:
        into.update(truth)
        return
    into["effort_sink_clients"] = into["effort_sink_clients"] + truth["effort_sink_clients"]
    into["owner_effort_per_deal"] = into["owner_effort_per_deal"] | truth["owner_effort_per_deal"]
