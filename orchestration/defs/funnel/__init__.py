"""Funnel figures (conversion, cohorts, lead requirements, segment focus) as Dagster assets and checks."""
