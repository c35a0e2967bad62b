{#-
    A table, unlike the other staging models: the largest raw table (activities), read by several Polars
    assets (activity norms, action plan, deals needing action, client base). As a view, each reader
    re-ranked every version of every activity.

    Incremental by the partition window: a run deletes the activities an extract in the window carries,
    and those of the deals the window touched (int_deals_touched: a deal that arrives after its
    activities clears their unknown_deal finding), then re-inserts the latest version of each (all its
    versions are ranked, so a backfill of an older window keeps a newer extract's version). Without a
    window (a full build) that is every activity.
-#}
-- depends_on: {{ ref('int_deals_touched') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=["{{ delete_touched_keys('activity_id', touched_activity_ids()) }}"]
    )
}}

with

source as (

    select * from {{ source('crm', 'activities') }}

),

window_versions as (

    select source.*
    from source
    {% if is_incremental() %}
    where source.activity_id in ({{ touched_activity_ids() }})
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
