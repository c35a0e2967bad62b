import subprocess
import sys

from orchestration.settings import REPO_ROOT

SETTINGS = """
import sys
from pathlib import Path
import duckdb
from ingestion.warehouse import DuckDBSettings, connect
query = "SELECT current_setting('enable_progress_bar')"
print(duckdb.connect().execute(query).fetchall()[0][0])
with connect(DuckDBSettings(Path(sys.argv[1]), memory_limit="1GB", threads=1)) as conn:
    print(conn.execute(query).fetchall()[0][0])
"""


def test_pipeline_connections_draw_no_progress_bar_in_the_logs(tmp_path):
    # In a process of its own, as a step is: DuckDB's default there draws a bar on the output for every
    # query over two seconds (under pytest it does not, so the check runs outside it).
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS, str(tmp_path / "warehouse.duckdb")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=True,
    )
    default, pipeline = result.stdout.split()
    assert (default, pipeline) == ("True", "False")
