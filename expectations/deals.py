"""Suite for `deals`: the contract's expectations, its row rules, and soft consistency checks."""

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from expectations.contract_suite import WARN, build_contract_suite, date_order, meta, row_rule_meta

TABLE = "deals"

CLOSED_STATUSES = ["won", "lost"]


def build_suite() -> gx.ExpectationSuite:
    """The `deals` suite.

    Error (contract row rules): close after create, a won deal has a positive amount, a closed
    deal has a close time. Warn (descriptions in the contract, not rules): an open deal has no
    close time, a lost reason only on lost deals, currency looks like an ISO 4217 code.
    """
    E = gx.expectations
    won = Column("status") == "won"
    return build_contract_suite(
        TABLE,
        extra=[
            date_order(TABLE, "close_before_create", later="closed_at", earlier="created_at"),
            # won_without_amount = "amount is null or amount = 0" on won deals: two expectations,
            # because GX range checks skip nulls.
            E.ExpectColumnValuesToNotBeNull(
                column="amount", row_condition=won, meta=row_rule_meta(TABLE, "won_without_amount")
            ),
            E.ExpectColumnValuesToBeBetween(
                column="amount",
                min_value=0,
                strict_min=True,
                row_condition=won,
                meta=row_rule_meta(TABLE, "won_without_amount"),
            ),
            E.ExpectColumnValuesToNotBeNull(
                column="closed_at",
                row_condition=Column("status").is_in(CLOSED_STATUSES),
                meta=row_rule_meta(TABLE, "closed_without_close_time"),
            ),
            E.ExpectColumnValuesToBeNull(
                column="closed_at",
                row_condition=Column("status") == "open",
                meta=meta(WARN, "open_with_close_time"),
            ),
            E.ExpectColumnValuesToBeNull(
                column="lost_reason",
                row_condition=Column("status").is_in(["open", "won"]),
                meta=meta(WARN, "lost_reason_not_lost"),
            ),
            E.ExpectColumnValuesToMatchRegex(
                column="currency", regex=r"^[A-Z]{3}$", meta=meta(WARN, "currency_code_format")
            ),
        ],
    )
