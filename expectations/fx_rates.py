"""Suite for `fx_rates`: the contract's expectations plus a currency-code format check."""

import great_expectations as gx

from expectations.contract_suite import WARN, build_contract_suite, meta

TABLE = "fx_rates"


def build_suite() -> gx.ExpectationSuite:
    """The `fx_rates` suite: contract expectations; currency looks like ISO 4217 (warn)."""
    return build_contract_suite(
        TABLE,
        extra=[
            gx.expectations.ExpectColumnValuesToMatchRegex(
                column="currency", regex=r"^[A-Z]{3}$", meta=meta(WARN, "currency_code_format")
            ),
        ],
    )
