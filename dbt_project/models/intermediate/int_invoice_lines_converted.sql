-- The staging SQL of an incremental run reads the rates (macros/staged_invoicing.sql).
-- depends_on: {{ ref('stg_invoicing__fx_rates') }}
{#-
    Incremental by the partition window, on the same client-months as fct_client_turnover: a run deletes
    the lines of every client-month in int_client_months_touched and re-inserts the lines those
    client-months now hold. Only the versions of invoices ever issued in one of them are ranked (the
    staging SQL called with a filter, macros/staged_invoicing.sql), so a day costs what the day touched.
    Without a window (a full build) every client-month is touched.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=["{{ delete_touched_client_months() }}"]
    )
}}

with

-- Used only in incremental runs, which the linter does not render.
touched_client_months as (  -- noqa: ST03

    select * from {{ ref('int_client_months_touched') }}

),

{% if is_incremental() %}
{%- set touched_invoice_ids -%}
    select invoice_versions.invoice_id
    from {{ source('invoicing', 'invoices') }} as invoice_versions
    inner join {{ ref('int_client_months_touched') }} as touched
        on
            invoice_versions.client_id = touched.client_id
            and cast({{ dbt.date_trunc('month', 'invoice_versions.issue_date') }} as date)
            = touched.turnover_month
{%- endset %}

invoice_lines as (

    {{ staged_invoice_lines(touched_invoice_ids) }}

),

invoices as (

    {{ staged_invoices(touched_invoice_ids) }}

),
{% else %}

invoice_lines as (

    select * from {{ ref('stg_invoicing__invoice_lines') }}

),

invoices as (

    select * from {{ ref('stg_invoicing__invoices') }}

),
{% endif %}

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

-- An incremental run keeps the lines whose latest version is in a touched client-month (an invoice
-- ranked because an older version was there may now be elsewhere, where nothing was deleted).
window_lines as (

    select lines_with_invoices.*
    from lines_with_invoices
    {% if is_incremental() %}
    inner join touched_client_months
        on
            lines_with_invoices.client_id = touched_client_months.client_id
            and lines_with_invoices.turnover_month = touched_client_months.turnover_month
    {% endif %}

),

final as (

    select
        *,
        cast(quantity * unit_price * fx_rate_to_reporting as decimal(18, 4)) as net_amount_reporting,
        cast(quantity * list_price * fx_rate_to_reporting as decimal(18, 4)) as list_amount_reporting,
        cast(quantity * unit_cost * fx_rate_to_reporting as decimal(18, 4)) as cost_amount_reporting,
        cast(quantity * (unit_price - unit_cost) * fx_rate_to_reporting as decimal(18, 4))
            as margin_reporting

    from window_lines

)

select * from final
