"""Time publishing a built warehouse: written whole, then starting from a previously published file.

    python -m benchmarks.profile_publish --warehouse <built funnel.duckdb> --work-dir <scratch folder> \
        [--previous <a published funnel.duckdb>] [--statements]

Publishes the `marts` and `quality` schemas of `--warehouse` (opened read-only) as the
`published/warehouse` step does (`ingestion.publish.publish`), into a file under `--work-dir`, with the
pipeline's DuckDB limits: first with no published file there (every table written whole, as before
round 17 and on a first run), then starting from a copy of `--previous` (default: the file just
written, so nothing changed but the publication log). Give the published file of an earlier run of the
same warehouse as `--previous` to time a real day's changes. The working warehouse is read through
views from a scratch database (publication records its attempt there), so it is neither copied nor
changed. Prints one JSON line per publication: seconds, tables written whole, rows deleted and inserted
in place, the file's size, and the process's peak RSS so far; `--statements` also prints the statements
over `--over` seconds (stderr). The scratch folder is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from benchmarks.profile_load import _TimedConnection


def _scratch_working(conn, warehouse: Path) -> None:
    """Views in `conn`'s database over every published table and view of `warehouse`, with their
    comments; the publication log copied as a table (publication appends to it)."""
    from ingestion.publish import PUBLISHED_SCHEMAS, _literal, _signatures, published_relations

    conn.execute("ATTACH ? AS built (READ_ONLY)", [str(warehouse)])
    relations = published_relations(conn, "built")
    for schema in PUBLISHED_SCHEMAS:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for schema, name, comment in relations:
        source = f'built.{schema}."{name}"'
        if (schema, name) == ("quality", "publication_log"):
            conn.execute(f"CREATE TABLE quality.publication_log AS SELECT * FROM {source}")
            kind = "TABLE"
        else:
            conn.execute(f'CREATE VIEW {schema}."{name}" AS SELECT * FROM {source}')
            kind = "VIEW"
        if comment:
            conn.execute(f'COMMENT ON {kind} {schema}."{name}" IS {_literal(comment)}')
    for (schema, name), columns in _signatures(conn, "built").items():
        for column, _, comment in columns:
            if comment is not None:
                conn.execute(f'COMMENT ON COLUMN {schema}."{name}"."{column}" IS {_literal(comment)}')


def profile(
    warehouse: Path,
    work_dir: Path,
    previous: Path | None = None,
    memory_limit: str = "2GB",
    threads: int = 2,
) -> tuple[list[dict], list[tuple[float, str]]]:
    from ingestion.publish import publish
    from ingestion.warehouse import DuckDBSettings, connect

    folder = work_dir / "profile_publish"
    shutil.rmtree(folder, ignore_errors=True)
    settings = DuckDBSettings(folder / "working.duckdb", memory_limit, threads, folder / "tmp")
    target = folder / "published" / "funnel.duckdb"
    results: list[dict[str, Any]] = []
    try:
        with connect(settings) as conn:
            _scratch_working(conn, warehouse)
            timed = _TimedConnection(conn)
            for label in ("whole", "from previous"):
                if label == "from previous" and previous is not None:
                    shutil.copyfile(previous, target)
                start = time.perf_counter()
                publication = publish(
                    timed, target, f"profile-{label}", date.today(), datetime.now(UTC).replace(tzinfo=None)
                )
                results.append(
                    {
                        "publication": label,
                        "seconds": round(time.perf_counter() - start, 2),
                        "tables": publication.tables,
                        "rows": publication.rows,
                        "tables_written_whole": publication.tables_written_whole,
                        "written_whole": list(publication.written_whole),
                        "rows_deleted": publication.rows_deleted,
                        "rows_inserted": publication.rows_inserted,
                        "file_mb": round(target.stat().st_size / 2**20),
                        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    }
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return results, timed.statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="a built working warehouse")
    parser.add_argument("--work-dir", type=Path, required=True, help="scratch folder (room for two copies)")
    parser.add_argument("--previous", type=Path, help="a published file to start the second publication from")
    parser.add_argument(
        "--memory-limit",
        default=os.environ.get("FUNNEL_DUCKDB_MEMORY_LIMIT", "2GB"),
        help="DuckDB's memory limit (default: the pipeline's)",
    )
    parser.add_argument("--statements", action="store_true", help="print the slow statements (stderr)")
    parser.add_argument("--over", type=float, default=0.3, help="with --statements: seconds to be printed")
    args = parser.parse_args()
    results, statements = profile(args.warehouse, args.work_dir, args.previous, args.memory_limit)
    if args.statements:
        for seconds, statement in statements:
            if seconds >= args.over:
                print(f"  {seconds:7.2f} s  {statement[:120]}", file=sys.stderr)
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
