-- The SQL is in macros/staged_crm.sql (the scoped uniqueness test calls it for a few events).
{{ staged_deal_stage_changes() }}
