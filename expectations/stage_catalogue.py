"""Suite for `stage_catalogue`: the contract's expectations plus its row rule.

Not expressed: "probability is on one scale per pipeline (all <= 1 or all <= 100)". GX has no
grouped expectation for it, and the contract's 0-100 range already bounds both scales; the
normalisation downstream reads the scale per pipeline.
"""

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from expectations.contract_suite import build_contract_suite, row_rule_meta

TABLE = "stage_catalogue"


def build_suite() -> gx.ExpectationSuite:
    """The `stage_catalogue` suite: contract expectations and `terminal_both_won_and_lost`."""
    return build_contract_suite(
        TABLE,
        extra=[
            # is_won and is_lost: among won stages, is_lost must be False.
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="is_lost",
                value_set=[False],
                row_condition=Column("is_won") == True,  # noqa: E712 - a GX condition, not a Python test
                meta=row_rule_meta(TABLE, "terminal_both_won_and_lost"),
            ),
        ],
    )
