{#-
    Incremental by the partition window: a run deletes and re-inserts every client-month an extract in
    the window may have changed (int_client_months_touched), so a month that lost all its invoices is
    emptied too.
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

invoice_lines as (

    select * from {{ ref('int_invoice_lines_converted') }}

),

-- Used only in incremental runs, which the linter does not render.
touched_client_months as (  -- noqa: ST03

    select * from {{ ref('int_client_months_touched') }}

),

window_lines as (

    select invoice_lines.*
    from invoice_lines
    {% if is_incremental() %}
    inner join touched_client_months
        on
            invoice_lines.client_id = touched_client_months.client_id
            and invoice_lines.turnover_month = touched_client_months.turnover_month
    {% endif %}

),

final as (

    select
        client_id,
        turnover_month,
        sum(net_amount_reporting) as net_revenue_reporting,
        sum(case when not is_credit_note then net_amount_reporting else 0 end) as invoiced_revenue_reporting,
        sum(case when is_credit_note then net_amount_reporting else 0 end) as credit_note_amount_reporting,
        sum(margin_reporting) as margin_reporting,
        count(distinct case when not is_credit_note then invoice_id end) as invoice_count,
        count(distinct case when is_credit_note then invoice_id end) as credit_note_count,
        sum(quantity) as net_quantity,
        -- Weighted by list value: 1 - charged / list over the invoice lines (credit notes aside).
        1 - (
            sum(case when not is_credit_note then net_amount_reporting end)
            / nullif(sum(case when not is_credit_note then list_amount_reporting end), 0)
        ) as average_discount,
        min(case when not is_credit_note then issue_date end) as first_invoice_date,
        max(case when not is_credit_note then issue_date end) as last_invoice_date

    from window_lines
    group by client_id, turnover_month

)

select * from final
