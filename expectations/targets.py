"""Suite for `targets`: the contract's expectations plus its date-order row rule."""

import great_expectations as gx

from expectations.contract_suite import build_contract_suite, date_order

TABLE = "targets"


def build_suite() -> gx.ExpectationSuite:
    """The `targets` suite: contract expectations and period_end >= period_start."""
    return build_contract_suite(
        TABLE,
        extra=[date_order(TABLE, "period_end_before_start", later="period_end", earlier="period_start")],
    )
