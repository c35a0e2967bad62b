"""Action plan (activity norms, weekly plan per owner, deals needing action) as Dagster assets and checks."""
