"""Which extract folders have landed: complete (no file written for a while) and with a fingerprint that
changes when a corrected extract replaces a file, so a sensor re-runs exactly that extract date."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DATE_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LandedExtract:
    extract_date: date
    fingerprint: str
    files: int


def extract_dates(landing_dir: Path) -> list[date]:
    if not landing_dir.is_dir():
        return []
    return sorted(
        date.fromisoformat(p.name) for p in landing_dir.iterdir() if p.is_dir() and DATE_FOLDER.match(p.name)
    )


def landed_extracts(landing_dir: Path, now_timestamp: float, settle_seconds: float) -> list[LandedExtract]:
    """Folders with at least one file, none modified in the last `settle_seconds` (a copy still in
    progress is left for the next look)."""
    landed = []
    for extract_date in extract_dates(landing_dir):
        files = sorted(f for f in (landing_dir / extract_date.isoformat()).iterdir() if f.is_file())
        if not files:
            continue
        stats = [f.stat() for f in files]
        if now_timestamp - max(s.st_mtime for s in stats) < settle_seconds:
            continue
        digest = hashlib.sha256()
        for f, s in zip(files, stats, strict=True):
            digest.update(f"{f.name}:{s.st_size}:{s.st_mtime_ns}\n".encode())
        landed.append(LandedExtract(extract_date, digest.hexdigest()[:16], len(files)))
    return landed
