with

source as (

    select * from {{ source('crm', 'deal_stage_history') }}

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
