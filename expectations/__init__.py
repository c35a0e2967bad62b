"""Great Expectations suites for the raw extract tables, and a runner that validates pandas frames.

One module per contract table exposes `build_suite()`; `expectations.runner.validate_relation`
runs a table's suite on a DuckDB relation (the partition's rows) in bounded memory, and
`expectations.runner.validate` on one pandas frame, with the same results. Both return plain
dataclasses (no GX objects leak out), so the Dagster asset checks that wrap them need no GX
knowledge.

GX 1.x has no DuckDB or Polars engine (its SQL path through duckdb-engine fails), so rows are
validated as pandas (made from Arrow record batches), except uniqueness over a whole partition,
which DuckDB counts (see `validate_relation`). This package imports no Dagster.
"""

import os

# GX reads this when a context is created; set it before any submodule imports great_expectations
# so no usage statistics leave the process. `setdefault` leaves an explicit operator choice alone.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
