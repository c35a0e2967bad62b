with

source as (

    select * from {{ source('crm', 'owners') }}

),

excluded_owners as (

    {{ integrity_issue_keys('owners', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['owner_id'], 'updated_at') }} as version_rank
    from source

),

final as (

    select
        cast(owner_id as varchar) as owner_id,
        cast(owner_name as varchar) as owner_name,
        cast(team as varchar) as team,
        cast(business_line as varchar) as business_line,
        cast(is_active as boolean) as is_active,
        cast(updated_at as timestamp) as updated_at

    from ranked_versions
    where
        version_rank = 1
        and owner_id not in (select excluded_owners.record_key from excluded_owners)

)

select * from final
