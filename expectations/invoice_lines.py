"""Suite for `invoice_lines`: the contract's expectations plus a soft pricing check.

Not expressed: "quantity is negative on credit-note lines" needs the invoice header (a join),
which GX cannot do on one frame; the warehouse models test it.
"""

import great_expectations as gx

from expectations.contract_suite import WARN, build_contract_suite, meta

TABLE = "invoice_lines"

# Share of lines that must be sold at or below list price. Price increases between list and
# invoice do happen, so a few lines above list are normal; many point at swapped columns.
LIST_PRICE_MOSTLY = 0.95


def build_suite() -> gx.ExpectationSuite:
    """The `invoice_lines` suite: contract expectations and list_price >= unit_price (mostly)."""
    return build_contract_suite(
        TABLE,
        extra=[
            gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="list_price",
                column_B="unit_price",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                mostly=LIST_PRICE_MOSTLY,
                meta=meta(WARN, "list_price_ge_unit_price"),
            ),
        ],
    )
