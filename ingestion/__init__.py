"""Ingestion: land the daily extracts in the warehouse's `raw` schema, with quarantine and integrity rules.

No Dagster import: the assets in `orchestration/` call these functions with an open DuckDB connection.
"""
