{#-
    The bodies of the deals and stage-change staging views, as macros like those of
    macros/staged_invoicing.sql: with `deal_ids` / `event_ids` (a select of keys), only those keys'
    versions are ranked, which DuckDB cannot do for a filter put on the view (it does not push a
    key-in-select filter through the ranking window). Incremental models call them for the deals their
    window touched, the scoped uniqueness tests for the keys with a version in the window
    (tests/generic/unique_latest_version.sql); the views without a filter.
-#}
{% macro staged_deals(deal_ids=none) -%}
with

source as (

    select * from {{ source('crm', 'deals') }}
    {%- if deal_ids %}
    where deal_id in ({{ deal_ids }})
    {%- endif %}

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
{%- endmacro %}



{% macro staged_deal_stage_changes(event_ids=none) -%}
with

source as (

    select * from {{ source('crm', 'deal_stage_history') }}
    {%- if event_ids %}
    where event_id in ({{ event_ids }})
    {%- endif %}

),

excluded_events as (

    {{ integrity_issue_keys('deal_stage_history', 'exclude') }}

),

flagged_events as (

    {{ integrity_issue_keys('deal_stage_history', 'flag') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['event_id'], 'changed_at') }} as version_rank
    from source

),

final as (

    select
        cast(ranked_versions.event_id as varchar) as event_id,
        cast(ranked_versions.deal_id as varchar) as deal_id,
        cast(ranked_versions.pipeline_id as varchar) as pipeline_id,
        cast(ranked_versions.stage_id as varchar) as stage_id,
        cast(ranked_versions.changed_at as timestamp) as changed_at,
        cast(ranked_versions.changed_by_owner_id as varchar) as changed_by_owner_id,
        flagged_events.record_key is not null as has_integrity_flag,
        ranked_versions._extract_date as extract_date

    from ranked_versions
    left join flagged_events
        on ranked_versions.event_id = flagged_events.record_key
    where
        ranked_versions.version_rank = 1
        and ranked_versions.event_id not in (select excluded_events.record_key from excluded_events)

)

select * from final
{%- endmacro %}


{#- The rows of stg_crm__deals an incremental model rewrites: in an incremental run the touched deals'
    (only their versions ranked), otherwise all of them, read from the view. A model calling it keeps
    `-- depends_on: {{ ref('stg_invoicing__fx_rates') }}`: the incremental branch reads the rates, and
    dbt does not see a ref it does not render while parsing. -#}
{% macro deals_to_rewrite() -%}
    {%- if is_incremental() -%}
        {{ staged_deals(touched_deal_ids()) }}
    {%- else -%}
        select * from {{ ref('stg_crm__deals') }}
    {%- endif -%}
{%- endmacro %}
