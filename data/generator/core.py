"""`generate()`: simulate, inject defects, write the landing layout and the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tqdm import tqdm

from data.contract import load_contract
from data.generator.config import GENERATOR_VERSION, Defect, GeneratorConfig, Manifest
from data.generator.defects import inject
from data.generator.simulate import rngs, simulate
from data.generator.writer import write_table

_SIM_STEPS = 5


def generate(config: GeneratorConfig, out_dir: Path) -> Manifest:
    """Generate the extracts of `config` under `out_dir` (its `extracts/` folder is replaced)."""
    out_dir = Path(out_dir)
    if config.shards > 1:
        from data.generator.shards import generate_sharded

        return generate_sharded(config, out_dir)
    contract = load_contract()
    n_folders = 1 if config.layout == "dump" else config.daily_days + 1
    total = _SIM_STEPS + 1 + len(contract.tables) * n_folders
    with tqdm(total=total, disable=not config.show_progress, desc="generate", unit="step") as bar:

        def tick(label: str) -> None:
            bar.set_postfix_str(label, refresh=False)
            bar.update()

        rng = rngs(config.seed)
        world = simulate(config, rng, tick)
        tables, defects, marks = inject(
            world.tables, world.events.deal, world.events.stage, config, rng["defects"]
        )
        tick("defects")
        extracts = out_dir / "extracts"
        if extracts.exists():
            shutil.rmtree(extracts)
        row_counts: dict[str, dict[str, int]] = {}
        located: dict[tuple[str, str], list[dict]] = {}
        for name, table in contract.tables.items():
            counts, where = write_table(tables.pop(name), table, config, out_dir, marks, tick)
            row_counts[name] = counts
            located.update(where)
            bar.update(n_folders - len(counts))
    for defect in defects:
        defect.rows = located.get((defect.defect_class, defect.table), [])
    defects.append(shuffled_defect(config, row_counts))
    manifest = Manifest(GENERATOR_VERSION, config.to_dict(), row_counts, defects, world.ground_truth)
    write_manifest(manifest, out_dir)
    return manifest


def shuffled_defect(config: GeneratorConfig, row_counts: dict[str, dict[str, int]]) -> Defect:
    """The `file_order_shuffled` entry: every stage-history file is in random row order."""
    shuffled = [
        {"extract_date": day, "file": f"{'deal_stage_history'}.{_suffix(config)}"}
        for day in row_counts["deal_stage_history"]
    ]
    return Defect("file_order_shuffled", "none", "deal_stage_history", "none", len(shuffled), rows=shuffled)


def write_manifest(manifest: Manifest, out_dir: Path) -> None:
    """Write `manifest.json` under `out_dir` (streamed: at scale 100 it is a few hundred MB)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "manifest.json").open("w", encoding="utf-8") as fh:
        json.dump(manifest.to_dict(), fh, indent=1, sort_keys=False)
        fh.write("\n")


def _suffix(config: GeneratorConfig) -> str:
    return "parquet" if config.format == "parquet" else "csv"
