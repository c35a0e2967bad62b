{#-
    The deals whose transitions an incremental run of fct_stage_transitions rewrites: every deal that
    an extract in the window (vars min_date, max_date) may have changed. Raw rows are read in all their
    versions, so a deal that an event moved away from is rewritten too.
-#}
with

deal_versions as (

    select
        deal_id,
        client_id,
        business_line,
        currency,
        created_at,
        _extract_date
    from {{ source('crm', 'deals') }}

),

event_versions as (

    select
        event_id,
        deal_id,
        _extract_date
    from {{ source('crm', 'deal_stage_history') }}

),

changed_events as (

    select distinct event_id
    from event_versions
    where {{ in_extract_window() }}

),

deals_with_changed_events as (

    select event_versions.deal_id
    from event_versions
    inner join changed_events
        on event_versions.event_id = changed_events.event_id

),

changed_deals as (

    select deal_id
    from deal_versions
    where {{ in_extract_window() }}

),

-- Client and catalogue attributes are denormalised on the transitions.
deals_of_changed_clients as (

    select deal_versions.deal_id
    from deal_versions
    where deal_versions.client_id in (
        select changed_clients.client_id
        from {{ source('crm', 'clients') }} as changed_clients
        where {{ in_extract_window('changed_clients._extract_date') }}
    )

),

deals_of_changed_pipelines as (

    select deal_versions.deal_id
    from deal_versions
    where deal_versions.business_line in (
        select changed_stages.pipeline_id
        from {{ source('crm', 'stage_catalogue') }} as changed_stages
        where {{ in_extract_window('changed_stages._extract_date') }}
    )

),

-- A late or corrected rate changes the amount of deals created on or after its date.
changed_rates as (

    select
        currency,
        min(rate_date) as first_changed_rate_date
    from {{ source('invoicing', 'fx_rates') }}
    where {{ in_extract_window() }}
    group by currency

),

deals_of_changed_rates as (

    select deal_versions.deal_id
    from deal_versions
    inner join changed_rates
        on
            deal_versions.currency = changed_rates.currency
            and cast(deal_versions.created_at as date) >= changed_rates.first_changed_rate_date

),

final as (

    select deal_id from deals_with_changed_events
    union
    select deal_id from changed_deals
    union
    select deal_id from deals_of_changed_clients
    union
    select deal_id from deals_of_changed_pipelines
    union
    select deal_id from deals_of_changed_rates

)

select * from final
