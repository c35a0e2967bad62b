"""The HTML report, written from the published file after each publication."""

from datetime import UTC, datetime

import dagster as dg
import duckdb

from orchestration.defs.publish.assets import PUBLISHED_KEY
from orchestration.resources import WarehouseResource
from reports import charts
from reports.data import load_report_data
from reports.render import render_report, write_report

REPORT_KEY = dg.AssetKey(["published", "report"])


def build_report_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY,
        description="A self-contained HTML report (funnel, forecast with backtest, lead requirements, ABC "
        "Pareto, segment scorecard, data quality) beside the published file; opens offline.",
        group_name="publish",
        deps=[PUBLISHED_KEY],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"html"},
    )
    def report(warehouse: WarehouseResource) -> dg.MaterializeResult:
        # Reads the published file (read-only, like any BI tool), never the working one.
        with duckdb.connect(str(warehouse.published_file), read_only=True) as conn:
            data = load_report_data(conn)
        path = write_report(
            render_report(data, datetime.now(UTC).replace(tzinfo=None)),
            warehouse.published_file.parent / "report.html",
        )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "as_of_date": str(data.as_of_date),
                "published_version": data.published_version,
                "funnel": dg.MetadataValue.md(
                    f"![funnel](data:image/png;base64,{charts.funnel_chart(data.funnel)})"
                ),
                "forecast": dg.MetadataValue.md(
                    f"![forecast](data:image/png;base64,{charts.forecast_chart(data.forecast)})"
                ),
                "abc_pareto": dg.MetadataValue.md(
                    f"![ABC Pareto](data:image/png;base64,{charts.pareto_chart(data.pareto)})"
                ),
            }
        )

    return report
