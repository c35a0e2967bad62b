"""Checks on the client-base marts: every client classified, totals reconciled with fct_client_turnover,
ABC classes in order of cumulative share."""

import dagster as dg

from orchestration.defs.client_base.assets import CLIENT_SEGMENTS_KEY, SEGMENT_SCORECARD_KEY
from orchestration.defs.warehouse_checks import check_steps_per_asset, warehouse_check
from orchestration.partitions import partition_as_of

# Float sums of decimals over thousands of rows: a cent of tolerance.
TOLERANCE_EUR = 0.01


def _fct_totals(conn, as_of) -> tuple[float, float]:
    (row,) = conn.execute(
        "SELECT coalesce(sum(net_revenue_reporting), 0)::DOUBLE, coalesce(sum(margin_reporting), 0)::DOUBLE "
        "FROM marts.fct_client_turnover WHERE turnover_month <= $as_of",
        {"as_of": as_of},
    ).fetchall()
    return row


def build_client_base_checks(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """One step per table."""

    def every_client_classified(context: dg.AssetCheckExecutionContext, conn) -> dg.AssetCheckResult:
        (row,) = conn.execute(
            "SELECT (SELECT count(*) FROM marts.dim_clients c WHERE NOT EXISTS "
            "  (SELECT 1 FROM marts.client_segments s WHERE s.client_id = c.client_id)), "
            "(SELECT count(*) - count(DISTINCT client_id) FROM marts.client_segments), "
            "(SELECT count(*) FROM marts.client_segments WHERE abc_turnover_class IS NULL "
            "  OR abc_margin_class IS NULL OR xyz_class IS NULL)"
        ).fetchall()
        missing, duplicated, unclassified = row
        return dg.AssetCheckResult(
            passed=missing == 0 and duplicated == 0 and unclassified == 0,
            metadata={"missing": missing, "duplicated": duplicated, "unclassified": unclassified},
        )

    def segments_reconcile(context: dg.AssetCheckExecutionContext, conn) -> dg.AssetCheckResult:
        turnover, margin = _fct_totals(conn, partition_as_of(context))
        ((seg_turnover, seg_margin),) = conn.execute(
            "SELECT coalesce(sum(lifetime_turnover_reporting), 0), "
            "coalesce(sum(lifetime_margin_reporting), 0) "
            "FROM marts.client_segments"
        ).fetchall()
        gaps = {"turnover_gap_eur": seg_turnover - turnover, "margin_gap_eur": seg_margin - margin}
        return dg.AssetCheckResult(
            passed=all(abs(g) <= TOLERANCE_EUR for g in gaps.values()),
            metadata={**gaps, "fct_turnover_eur": turnover, "fct_margin_eur": margin},
        )

    def abc_in_order(context: dg.AssetCheckExecutionContext, conn) -> dg.AssetCheckResult:
        overlaps = {}
        for basis, value in (("turnover", "turnover_reporting"), ("margin", "margin_reporting")):
            share, cls = f"abc_{basis}_cumulative_share", f"abc_{basis}_class"
            (row,) = conn.execute(
                f"WITH c AS (SELECT {cls} AS k, min({share}) AS lo, max({share}) AS hi "
                f"FROM marts.client_segments WHERE {value} > 0 GROUP BY 1) "
                "SELECT count(*) FROM c a JOIN c b ON a.k < b.k AND a.hi > b.lo"
            ).fetchall()
            overlaps[basis] = row[0]
        return dg.AssetCheckResult(
            passed=not any(overlaps.values()), metadata={f"{k}_overlaps": v for k, v in overlaps.items()}
        )

    def scorecard_reconciles(context: dg.AssetCheckExecutionContext, conn) -> dg.AssetCheckResult:
        turnover, margin = _fct_totals(conn, partition_as_of(context))
        rows = conn.execute(
            "SELECT grouping, sum(lifetime_turnover_reporting), sum(lifetime_margin_reporting), "
            "coalesce(sum(turnover_share), 1) FROM marts.segment_scorecard GROUP BY 1 ORDER BY 1"
        ).fetchall()
        gaps = {
            grouping: {"turnover_gap_eur": t - turnover, "margin_gap_eur": m - margin, "share_sum": s}
            for grouping, t, m, s in rows
        }
        passed = bool(rows) and all(
            abs(g["turnover_gap_eur"]) <= TOLERANCE_EUR
            and abs(g["margin_gap_eur"]) <= TOLERANCE_EUR
            and abs(g["share_sum"] - 1) <= 1e-9
            for g in gaps.values()
        )
        return dg.AssetCheckResult(passed=passed, metadata={"by_grouping": dg.MetadataValue.json(gaps)})

    segments = [
        warehouse_check(
            CLIENT_SEGMENTS_KEY,
            "every_client_classified",
            "Every client of dim_clients has exactly one row with an ABC (turnover, margin) and XYZ class.",
            partitions_def,
            every_client_classified,
        ),
        warehouse_check(
            CLIENT_SEGMENTS_KEY,
            "reconciles_with_client_turnover",
            "Lifetime turnover and margin of client_segments equal fct_client_turnover up to the as-of "
            "month.",
            partitions_def,
            segments_reconcile,
        ),
        warehouse_check(
            CLIENT_SEGMENTS_KEY,
            "abc_classes_in_order",
            "Every A client holds a lower cumulative share than every B client, and B than C (clients with "
            "positive value), by turnover and by margin.",
            partitions_def,
            abc_in_order,
            blocking=False,
        ),
    ]
    scorecard = warehouse_check(
        SEGMENT_SCORECARD_KEY,
        "reconciles_with_client_turnover",
        "Within every grouping, lifetime turnover and margin add up to fct_client_turnover and the window "
        "turnover shares to one.",
        partitions_def,
        scorecard_reconciles,
    )
    return check_steps_per_asset([*segments, scorecard])
