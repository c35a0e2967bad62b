"""Literal inputs for the funnel transforms: a tiny pipeline and hand-made stage histories."""

from datetime import date, datetime

import polars as pl

STAGES = pl.DataFrame(
    {
        "pipeline_id": ["p"] * 5,
        "stage_id": ["lead", "qual", "prop", "won", "lost"],
        "stage_name": ["Lead", "Qualified", "Proposal", "Won", "Lost"],
        "stage_order": [1, 2, 3, 4, 5],
        "is_won": [False, False, False, True, False],
        "is_lost": [False, False, False, False, True],
        "is_deleted": [False] * 5,
        "sla_days": [5, 10, 10, None, None],
    }
)
ORDER = dict(zip(STAGES["stage_id"], STAGES["stage_order"], strict=True))


def transitions(histories: dict[str, list[tuple[str, datetime]]]) -> pl.LazyFrame:
    """fct_stage_transitions rows from {deal: [(stage, changed_at), ...]} in order."""
    rows = []
    for deal_id, events in histories.items():
        for number, (stage, at) in enumerate(events, start=1):
            previous = events[number - 2] if number > 1 else None
            rows.append(
                {
                    "deal_id": deal_id,
                    "from_stage_id": previous[0] if previous else None,
                    "from_stage_days": (at - previous[1]).total_seconds() / 86400 if previous else None,
                    "to_stage_id": stage,
                    "to_stage_order": ORDER[stage],
                    "changed_at": at,
                    "transition_number": number,
                    "is_to_won": stage == "won",
                    "is_to_lost": stage == "lost",
                }
            )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "changed_at": pl.Datetime("us"),
            "from_stage_id": pl.String,
            "from_stage_days": pl.Float64,
        },
    ).lazy()


def deals(rows: list[tuple[str, str, datetime, float | None]], line: str = "p") -> pl.LazyFrame:
    """dim_deals rows: (deal_id, client_id, created_at, amount)."""
    return pl.DataFrame(
        {
            "deal_id": [r[0] for r in rows],
            "client_id": [r[1] for r in rows],
            "business_line": [line] * len(rows),
            "created_at": [r[2] for r in rows],
            "amount_reporting": [r[3] for r in rows],
        },
        schema_overrides={"created_at": pl.Datetime("us"), "amount_reporting": pl.Float64},
    ).lazy()


def clients(segments: dict[str, str]) -> pl.LazyFrame:
    return pl.DataFrame({"client_id": list(segments), "segment": list(segments.values())}).lazy()


def targets(rows: list[tuple[date, date, str, str, float]]) -> pl.LazyFrame:
    return pl.DataFrame(
        rows,
        schema=["period_start", "period_end", "business_line", "segment", "revenue_target_reporting"],
        orient="row",
    ).lazy()
