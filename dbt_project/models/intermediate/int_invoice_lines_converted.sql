-- Built after int_client_months_touched: its tests check the client-months this run touched (macros/test_scope.sql).
-- depends_on: {{ ref('int_client_months_touched') }}

with

invoice_lines as (

    select * from {{ ref('stg_invoicing__invoice_lines') }}

),

invoices as (

    select * from {{ ref('stg_invoicing__invoices') }}

),

-- Lines of excluded invoices drop out with their header.
lines_with_invoices as (

    select
        invoice_lines.invoice_line_id,
        invoice_lines.invoice_id,
        invoices.client_id,
        invoices.deal_id,
        invoices.issue_date,
        cast({{ dbt.date_trunc('month', 'invoices.issue_date') }} as date) as turnover_month,
        invoices.is_credit_note,
        invoices.currency,
        invoices.fx_rate_to_reporting,
        invoice_lines.product_id,
        invoice_lines.product_category,
        invoice_lines.quantity,
        invoice_lines.unit_price,
        invoice_lines.list_price,
        invoice_lines.unit_cost
    from invoice_lines
    inner join invoices
        on invoice_lines.invoice_id = invoices.invoice_id

),

final as (

    select
        *,
        cast(quantity * unit_price * fx_rate_to_reporting as decimal(18, 4)) as net_amount_reporting,
        cast(quantity * list_price * fx_rate_to_reporting as decimal(18, 4)) as list_amount_reporting,
        cast(quantity * unit_cost * fx_rate_to_reporting as decimal(18, 4)) as cost_amount_reporting,
        cast(quantity * (unit_price - unit_cost) * fx_rate_to_reporting as decimal(18, 4))
            as margin_reporting

    from lines_with_invoices

)

select * from final
