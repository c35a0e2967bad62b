with

source as (

    select * from {{ source('crm', 'stage_catalogue') }}

),

excluded_stages as (

    {{ integrity_issue_keys('stage_catalogue', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ dbt.concat(['pipeline_id', "'|'", 'stage_id']) }} as record_key,
        {{ latest_version_rank(['pipeline_id', 'stage_id'], 'updated_at') }} as version_rank
    from source

),

latest_stages as (

    select *
    from ranked_versions
    where
        version_rank = 1
        and record_key not in (select excluded_stages.record_key from excluded_stages)

),

-- The CRM gives probabilities on 0-1 or 0-100 depending on the pipeline: a pipeline with any value
-- above 1 is on the percent scale.
pipeline_scales as (

    select
        pipeline_id,
        case when max(probability) > 1 then 100.0 else 1.0 end as probability_divisor
    from latest_stages
    group by pipeline_id

),

final as (

    select
        cast(latest_stages.pipeline_id as varchar) as pipeline_id,
        cast(latest_stages.stage_id as varchar) as stage_id,
        cast(latest_stages.stage_name as varchar) as stage_name,
        cast(latest_stages.stage_order as bigint) as stage_order,
        cast(latest_stages.is_won as boolean) as is_won,
        cast(latest_stages.is_lost as boolean) as is_lost,
        cast(latest_stages.is_won or latest_stages.is_lost as boolean) as is_terminal,
        cast(latest_stages.probability / pipeline_scales.probability_divisor as double) as win_probability,
        cast(latest_stages.probability as double) as crm_probability,
        cast(latest_stages.sla_days as bigint) as sla_days,
        cast(latest_stages.is_deleted as boolean) as is_deleted,
        cast(latest_stages.updated_at as timestamp) as updated_at

    from latest_stages
    inner join pipeline_scales
        on latest_stages.pipeline_id = pipeline_scales.pipeline_id

)

select * from final
