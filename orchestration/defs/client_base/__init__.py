"""Client-base segmentation: `marts.client_segments` and `marts.segment_scorecard` (see "
"docs/client_base.md)."""
