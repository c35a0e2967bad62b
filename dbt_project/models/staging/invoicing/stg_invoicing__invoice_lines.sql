-- The SQL is in macros/staged_invoicing.sql (incremental models call it for a few invoices).
{{ staged_invoice_lines() }}
