"""Suite for `invoices`: the contract's expectations, its row rule, and soft checks."""

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from expectations.contract_suite import EXTRACT_DATE, WARN, build_contract_suite, meta, row_rule_meta

TABLE = "invoices"


def build_suite() -> gx.ExpectationSuite:
    """The `invoices` suite.

    Error: a credit note names the invoice it corrects (contract row rule). Warn: an invoice
    number appears once per extract date (raw keeps versions, so numbers repeat across extracts
    legitimately; within one daily extract a repeat is most likely a duplicate number, though a
    full history dump can repeat it too, hence warn), and currency looks like an ISO 4217 code.
    """
    E = gx.expectations
    return build_contract_suite(
        TABLE,
        extra=[
            E.ExpectColumnValuesToNotBeNull(
                column="original_invoice_id",
                row_condition=Column("is_credit_note") == True,  # noqa: E712 - a GX condition
                meta=row_rule_meta(TABLE, "credit_note_without_original"),
            ),
            E.ExpectCompoundColumnsToBeUnique(
                column_list=["invoice_number", EXTRACT_DATE],
                meta=meta(WARN, "invoice_number_unique_per_extract"),
            ),
            E.ExpectColumnValuesToMatchRegex(
                column="currency", regex=r"^[A-Z]{3}$", meta=meta(WARN, "currency_code_format")
            ),
        ],
    )
