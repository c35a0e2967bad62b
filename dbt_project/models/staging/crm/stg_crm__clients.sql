with

source as (

    select * from {{ source('crm', 'clients') }}

),

excluded_clients as (

    {{ integrity_issue_keys('clients', 'exclude') }}

),

flagged_clients as (

    {{ integrity_issue_keys('clients', 'flag') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['client_id'], 'updated_at') }} as version_rank
    from source

),

final as (

    select
        cast(ranked_versions.client_id as varchar) as client_id,
        cast(ranked_versions.client_name as varchar) as client_name,
        cast(ranked_versions.industry as varchar) as industry,
        cast(ranked_versions.segment as varchar) as segment,
        cast(ranked_versions.use_case as varchar) as use_case,
        cast(ranked_versions.employees as bigint) as employees,
        cast(ranked_versions.revenue_band as varchar) as revenue_band,
        cast(ranked_versions.region as varchar) as region,
        cast(ranked_versions.is_deleted as boolean) as is_deleted,
        cast(ranked_versions.merged_into_client_id as varchar) as merged_into_client_id,
        cast(ranked_versions.created_at as timestamp) as created_at,
        cast(ranked_versions.updated_at as timestamp) as updated_at,
        flagged_clients.record_key is not null as has_integrity_flag,
        ranked_versions._extract_date as extract_date

    from ranked_versions
    left join flagged_clients
        on ranked_versions.client_id = flagged_clients.record_key
    where
        ranked_versions.version_rank = 1
        and ranked_versions.client_id not in (select excluded_clients.record_key from excluded_clients)

)

select * from final
