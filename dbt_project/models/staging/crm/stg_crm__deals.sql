with

source as (

    select * from {{ source('crm', 'deals') }}

),

fx_rates as (

    select * from {{ ref('stg_invoicing__fx_rates') }}

),

excluded_deals as (

    {{ integrity_issue_keys('deals', 'exclude') }}

),

flagged_deals as (

    {{ integrity_issue_keys('deals', 'flag') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['deal_id'], 'updated_at') }} as version_rank
    from source

),

-- A deleted deal leaves the funnel altogether: its events and amounts would count work that the CRM
-- no longer shows.
latest_deals as (

    select *
    from ranked_versions
    where
        version_rank = 1
        and not is_deleted
        and deal_id not in (select excluded_deals.record_key from excluded_deals)

),

-- The amount is converted at the rate of the day the deal was created, or the latest earlier rate.
deals_with_rates as (

    {{ deals_with_fx_rate('latest_deals', 'fx_rates') }}

),

final as (

    select
        cast(deals_with_rates.deal_id as varchar) as deal_id,
        cast(deals_with_rates.client_id as varchar) as client_id,
        cast(deals_with_rates.business_line as varchar) as business_line,
        cast(deals_with_rates.business_line as varchar) as pipeline_id,
        cast(deals_with_rates.owner_id as varchar) as owner_id,
        cast(deals_with_rates.source_channel as varchar) as source_channel,
        cast(deals_with_rates.amount as decimal(18, 4)) as amount,
        cast(deals_with_rates.currency as varchar) as currency,
        cast(deals_with_rates.fx_rate_to_reporting as double) as fx_rate_to_reporting,
        cast(deals_with_rates.amount * deals_with_rates.fx_rate_to_reporting as decimal(18, 4))
            as amount_reporting,
        cast(deals_with_rates.created_at as timestamp) as created_at,
        cast(deals_with_rates.expected_close_date as date) as expected_close_date,
        cast(deals_with_rates.status as varchar) as crm_status,
        cast(deals_with_rates.lost_reason as varchar) as lost_reason,
        cast(deals_with_rates.closed_at as timestamp) as closed_at,
        cast(deals_with_rates.updated_at as timestamp) as updated_at,
        flagged_deals.record_key is not null as has_integrity_flag,
        deals_with_rates._extract_date as extract_date

    from deals_with_rates
    left join flagged_deals
        on deals_with_rates.deal_id = flagged_deals.record_key

)

select * from final
