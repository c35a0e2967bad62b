with

source as (

    select * from {{ source('invoicing', 'invoices') }}

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
