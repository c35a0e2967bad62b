"""The self-contained HTML report written after each publication (no Dagster import)."""
