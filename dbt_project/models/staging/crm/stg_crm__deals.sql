-- The SQL is in macros/staged_crm.sql (incremental models call it for the deals they touch).
{{ staged_deals() }}
