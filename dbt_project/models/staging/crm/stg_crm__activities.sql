{#-
    A table, unlike the other staging models: the largest raw table (activities), read by several Polars
    assets (activity norms, action plan, deals needing action, client base). As a view, each reader
    re-ranked every version of every activity.

    Incremental by the partition window: a run deletes every activity an extract in the window carries
    and re-inserts the latest version of each (all its versions are ranked, so a backfill of an older
    window keeps a newer extract's version). Without a window (a full build) that is every activity.
-#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=[
            "{% if is_incremental() %}
            delete from {{ this }}
            where activity_id in (
                select cast(changed.activity_id as varchar)
                from {{ source('crm', 'activities') }} as changed
                where {{ in_extract_window('changed._extract_date') }}
            )
            {% endif %}"
        ]
    )
}}

with

source as (

    select * from {{ source('crm', 'activities') }}

),

-- Used only in incremental runs, which the linter does not render.
changed_activities as (  -- noqa: ST03

    select distinct activity_id
    from source
    where {{ in_extract_window() }}

),

window_versions as (

    select source.*
    from source
    {% if is_incremental() %}
    where source.activity_id in (select changed_activities.activity_id from changed_activities)
    {% endif %}

),

excluded_activities as (

    {{ integrity_issue_keys('activities', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['activity_id'], 'updated_at') }} as version_rank
    from window_versions

),

final as (

    select
        cast(activity_id as varchar) as activity_id,
        cast(client_id as varchar) as client_id,
        cast(deal_id as varchar) as deal_id,
        cast(owner_id as varchar) as owner_id,
        cast(activity_type as varchar) as activity_type,
        cast(occurred_at as timestamp) as occurred_at,
        cast(duration_minutes as bigint) as duration_minutes,
        cast(updated_at as timestamp) as updated_at

    from ranked_versions
    where
        version_rank = 1
        and activity_id not in (select excluded_activities.record_key from excluded_activities)

)

select * from final
