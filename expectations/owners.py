"""Suite for `owners` (Sales owners): the contract's expectations only.

The contract says all there is to check here on one table; cross-table rules (unknown keys,
events out of order against the deal) are the warehouse models' tests, not GX's.
"""

import great_expectations as gx

from expectations.contract_suite import build_contract_suite

TABLE = "owners"


def build_suite() -> gx.ExpectationSuite:
    """The `owners` suite, built from the extract contract."""
    return build_contract_suite(TABLE)
