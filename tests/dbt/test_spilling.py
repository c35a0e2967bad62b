"""dbt under a memory limit small enough that DuckDB spills to its temp directory.

At scale the 2GB default makes DuckDB spill during `dbt build`. dbt-duckdb re-applies the profile's
`settings` with SET on every cursor, and DuckDB refuses to switch the temp directory once it holds
spilled data ("Cannot switch temporary directory after the current one has been used"): every model
after the first spill failed. The profile now leaves the temp directory to DuckDB's default (beside
the warehouse file).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from orchestration.settings import REPO_ROOT

# Measured on the embedded sample: below about 50MB DuckDB runs out of memory outright; between that
# and about 75MB it spills (the old profile failed there on the second cursor).
SPILLING_LIMIT = "64MB"


def test_dbt_build_spilling_to_disk_succeeds(sample_warehouse, tmp_path):
    warehouse = tmp_path / "funnel.duckdb"
    shutil.copy(sample_warehouse.warehouse_path, warehouse)
    env = os.environ | {
        "FUNNEL_WAREHOUSE_PATH": str(warehouse),
        "FUNNEL_DUCKDB_MEMORY_LIMIT": SPILLING_LIMIT,
        "FUNNEL_DUCKDB_TEMP_DIR": str(tmp_path / "spill"),  # read by the pipeline, not by dbt
    }
    dbt = Path(sys.executable).parent / "dbt"
    project = REPO_ROOT / "dbt_project"
    command = [str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(project)]
    command += ["--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "Cannot switch temporary directory" not in done.stdout
    assert done.returncode == 0, done.stdout[-3000:]
