"""Suite for `deal_stage_history` (Stage-change events of deals): the contract's expectations only.

The contract says all there is to check here on one table; cross-table rules (unknown keys,
events out of order against the deal) are the warehouse models' tests, not GX's.
"""

import great_expectations as gx

from expectations.contract_suite import build_contract_suite

TABLE = "deal_stage_history"


def build_suite() -> gx.ExpectationSuite:
    """The `deal_stage_history` suite, built from the extract contract."""
    return build_contract_suite(TABLE)
