"""The contract is the single source of truth: its docs are generated from it and its keys are sound."""

import pytest
import yaml

from data.contract import CONTRACT_PATH, README_PATH, load_contract, parse_contract, render_markdown


def test_data_readme_is_generated_from_the_contract():
    assert README_PATH.read_text(encoding="utf-8") == render_markdown(load_contract()), (
        "data/README.md is stale: run `make docs`"
    )


def test_every_table_of_the_brief_is_in_the_contract():
    assert set(load_contract().tables) == {
        "clients",
        "owners",
        "stage_catalogue",
        "deals",
        "deal_stage_history",
        "activities",
        "invoices",
        "invoice_lines",
        "fx_rates",
        "targets",
    }


def test_a_key_naming_no_column_is_rejected():
    raw = yaml.safe_load(CONTRACT_PATH.read_text(encoding="utf-8"))
    raw["tables"]["deals"]["primary_key"] = ["deal_key"]
    with pytest.raises(KeyError, match="no column 'deal_key'"):
        parse_contract(raw)


def test_dbt_reporting_currency_matches_the_contract():
    dbt_project = yaml.safe_load(
        (CONTRACT_PATH.parent.parent / "dbt_project" / "dbt_project.yml").read_text()
    )
    assert dbt_project["vars"]["reporting_currency"] == load_contract().reporting_currency
