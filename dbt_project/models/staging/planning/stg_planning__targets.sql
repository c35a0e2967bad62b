with

source as (

    select * from {{ source('planning', 'targets') }}

),

excluded_targets as (

    {{ integrity_issue_keys('targets', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ dbt.concat([
            dbt.cast('period_start', api.Column.translate_type('string')),
            "'|'", 'business_line', "'|'", 'segment',
        ]) }} as record_key,
        {{ latest_version_rank(['period_start', 'business_line', 'segment']) }} as version_rank
    from source

),

final as (

    select
        cast(period_start as date) as period_start,
        cast(period_end as date) as period_end,
        cast(business_line as varchar) as business_line,
        cast(segment as varchar) as segment,
        cast(revenue_target as decimal(18, 4)) as revenue_target_reporting

    from ranked_versions
    where
        version_rank = 1
        and record_key not in (select excluded_targets.record_key from excluded_targets)

)

select * from final
