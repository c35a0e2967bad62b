"""Command line: `python -m data.generator --scale 0.02 --seed 7 --out DIR [options]`."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from data.generator.config import FORMATS, LAYOUTS, GeneratorConfig
from data.generator.core import generate


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, generate, and print a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m data.generator", description=__doc__)
    parser.add_argument("--scale", type=float, default=0.02, help="scale factor (1 = ~100k deals)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--layout", choices=LAYOUTS, default="daily")
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--defect-rate", type=float, default=0.005)
    parser.add_argument("--end-date", type=date.fromisoformat, default=date(2026, 11, 26))
    parser.add_argument("--daily-days", type=int, default=14)
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        help="generate as this many independent worlds of scale/shards, concatenated (bounded memory)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only at scale >= 0.5)",
    )
    args = parser.parse_args(argv)
    config = GeneratorConfig(
        scale=args.scale,
        seed=args.seed,
        end_date=args.end_date,
        daily_days=args.daily_days,
        layout=args.layout,
        format=args.format,
        defect_rate=args.defect_rate,
        progress=args.progress,
        shards=args.shards,
    )
    manifest = generate(config, args.out)
    rows = {t: sum(c.values()) for t, c in manifest.row_counts.items()}
    print(f"wrote {args.out}: " + ", ".join(f"{t}={n}" for t, n in rows.items()))


if __name__ == "__main__":
    main()
