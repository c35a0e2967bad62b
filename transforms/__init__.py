"""Pure Polars figures: LazyFrames in, LazyFrames out; no Dagster import, no I/O."""
