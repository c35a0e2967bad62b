{#-
    The bodies of the invoicing staging views. A view cannot take arguments, and DuckDB does not push a
    filter on the key through the ranking window of a view, so an incremental model that needs a few
    invoices calls these with `invoice_ids` (a select of invoice ids): only those keys' versions are
    ranked. The staging models call them without it.
-#}
{% macro staged_invoices(invoice_ids=none) -%}
with

source as (

    select * from {{ source('invoicing', 'invoices') }}
    {%- if invoice_ids %}
    where invoice_id in ({{ invoice_ids }})
    {%- endif %}

),

fx_rates as (

    select * from {{ ref('stg_invoicing__fx_rates') }}

),

excluded_invoices as (

    {{ integrity_issue_keys('invoices', 'exclude') }}

),

flagged_invoices as (

    {{ integrity_issue_keys('invoices', 'flag') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['invoice_id'], 'updated_at') }} as version_rank
    from source

),

latest_invoices as (

    select *
    from ranked_versions
    where
        version_rank = 1
        and invoice_id not in (select excluded_invoices.record_key from excluded_invoices)

),

-- Turnover is booked at the rate of the issue date, or the latest earlier rate.
-- ASOF JOIN is DuckDB syntax (listed in README.md).
invoices_with_rates as (

    select
        latest_invoices.*,
        case
            when latest_invoices.currency = '{{ var("reporting_currency") }}' then 1.0
            else fx_rates.rate_to_reporting
        end as fx_rate_to_reporting
    from latest_invoices
    asof left join fx_rates
        on
            latest_invoices.currency = fx_rates.currency
            and latest_invoices.issue_date >= fx_rates.rate_date

),

final as (

    select
        cast(invoices_with_rates.invoice_id as varchar) as invoice_id,
        cast(invoices_with_rates.invoice_number as varchar) as invoice_number,
        cast(invoices_with_rates.client_id as varchar) as client_id,
        cast(invoices_with_rates.deal_id as varchar) as deal_id,
        cast(invoices_with_rates.issue_date as date) as issue_date,
        cast(invoices_with_rates.currency as varchar) as currency,
        cast(invoices_with_rates.fx_rate_to_reporting as double) as fx_rate_to_reporting,
        cast(invoices_with_rates.is_credit_note as boolean) as is_credit_note,
        cast(invoices_with_rates.original_invoice_id as varchar) as original_invoice_id,
        cast(invoices_with_rates.updated_at as timestamp) as updated_at,
        flagged_invoices.record_key is not null as has_integrity_flag,
        invoices_with_rates._extract_date as extract_date

    from invoices_with_rates
    left join flagged_invoices
        on invoices_with_rates.invoice_id = flagged_invoices.record_key

)

select * from final
{%- endmacro %}


{% macro staged_invoice_lines(invoice_ids=none) -%}
with

source as (

    select * from {{ source('invoicing', 'invoice_lines') }}
    {%- if invoice_ids %}
    -- Every version of a line that has ever been on one of these invoices.
    where invoice_line_id in (
        select line_versions.invoice_line_id
        from {{ source('invoicing', 'invoice_lines') }} as line_versions
        where line_versions.invoice_id in ({{ invoice_ids }})
    )
    {%- endif %}

),

excluded_lines as (

    {{ integrity_issue_keys('invoice_lines', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['invoice_line_id'], 'updated_at') }} as version_rank
    from source

),

final as (

    select
        cast(invoice_line_id as varchar) as invoice_line_id,
        cast(invoice_id as varchar) as invoice_id,
        cast(line_number as bigint) as line_number,
        cast(product_id as varchar) as product_id,
        cast(product_category as varchar) as product_category,
        cast(quantity as decimal(18, 4)) as quantity,
        cast(unit_price as decimal(18, 4)) as unit_price,
        cast(list_price as decimal(18, 4)) as list_price,
        cast(unit_cost as decimal(18, 4)) as unit_cost,
        cast(updated_at as timestamp) as updated_at,
        _extract_date as extract_date

    from ranked_versions
    where
        version_rank = 1
        and invoice_line_id not in (select excluded_lines.record_key from excluded_lines)

)

select * from final
{%- endmacro %}
