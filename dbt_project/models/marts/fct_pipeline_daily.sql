with

spells as (

    select * from {{ ref('int_deal_stage_spells') }}

),

deals as (

    select * from {{ ref('stg_crm__deals') }}

),

clients as (

    select * from {{ ref('stg_crm__clients') }}

),

stages as (

    select * from {{ ref('stg_crm__stages') }}

),

-- From the first stage event to the as-of date, both included.
days as (

    {{ dbt.date_spine(
        'day',
        '(select min(cast(entered_at as date)) from ' ~ ref('int_deal_stage_spells') ~ ')',
        dbt.dateadd('day', 1, as_of_date())
    ) }}

),

calendar as (

    select cast(date_day as date) as pipeline_date
    from days

),

deal_segments as (

    select
        deals.deal_id,
        deals.business_line,
        coalesce(clients.segment, 'unknown') as segment,
        deals.amount_reporting
    from deals
    left join clients
        on deals.client_id = clients.client_id

),

line_segment_stages as (

    -- Stages removed from the catalogue stay: deals can still sit in them, and they are open pipeline.
    select distinct
        deal_segments.business_line,
        deal_segments.segment,
        stages.stage_id,
        stages.stage_order,
        stages.is_deleted as is_deleted_stage
    from deal_segments
    inner join stages
        on deal_segments.business_line = stages.pipeline_id
    where not stages.is_terminal

),

-- A deal is open in a stage on day D when its spell there covers the end of D.
open_spells_by_day as (

    select
        calendar.pipeline_date,
        deal_segments.business_line,
        deal_segments.segment,
        spells.stage_id,
        spells.deal_id,
        deal_segments.amount_reporting
    from spells
    inner join deal_segments
        on spells.deal_id = deal_segments.deal_id
    inner join calendar
        on
            spells.entered_at < {{ dbt.dateadd('day', 1, 'calendar.pipeline_date') }}
            and (
                spells.exited_at is null
                or spells.exited_at >= {{ dbt.dateadd('day', 1, 'calendar.pipeline_date') }}
            )
    where not spells.is_terminal

),

open_pipeline as (

    select
        pipeline_date,
        business_line,
        segment,
        stage_id,
        count(*) as open_deal_count,
        sum(amount_reporting) as open_amount_reporting
    from open_spells_by_day
    group by pipeline_date, business_line, segment, stage_id

),

final as (

    select
        calendar.pipeline_date,
        line_segment_stages.business_line,
        line_segment_stages.segment,
        line_segment_stages.stage_id,
        line_segment_stages.stage_order,
        line_segment_stages.is_deleted_stage,
        coalesce(open_pipeline.open_deal_count, 0) as open_deal_count,
        cast(coalesce(open_pipeline.open_amount_reporting, 0) as decimal(18, 4)) as open_amount_reporting

    from calendar
    cross join line_segment_stages
    left join open_pipeline
        on
            calendar.pipeline_date = open_pipeline.pipeline_date
            and line_segment_stages.business_line = open_pipeline.business_line
            and line_segment_stages.segment = open_pipeline.segment
            and line_segment_stages.stage_id = open_pipeline.stage_id

)

select * from final
