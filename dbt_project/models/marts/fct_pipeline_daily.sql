with

-- The deals of stg_crm__deals, one row each, already built: the view would rank every version again.
deals as (

    select * from {{ ref('dim_deals') }}

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
        coalesce(clients.segment, 'unknown') as segment
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

-- A spell is open at the end of day D when it was entered by then and not yet left: it adds one
-- on the day it is entered and takes one away on the day it is left (int_pipeline_moves, stored per
-- deal), so a running sum per stage gives the open deals of every day. (A range join of spells against
-- days is ten times slower at scale.)
moves as (

    select * from {{ ref('int_pipeline_moves') }}

),

daily_moves as (

    select
        business_line,
        segment,
        stage_id,
        move_date,
        sum(deal_delta) as deal_delta,
        sum(amount_delta) as amount_delta
    from moves
    group by business_line, segment, stage_id, move_date

),

final as (

    select
        calendar.pipeline_date,
        line_segment_stages.business_line,
        line_segment_stages.segment,
        line_segment_stages.stage_id,
        line_segment_stages.stage_order,
        line_segment_stages.is_deleted_stage,
        sum(coalesce(daily_moves.deal_delta, 0)) over running_total as open_deal_count,
        cast(
            sum(coalesce(daily_moves.amount_delta, 0)) over running_total as decimal(18, 4)
        ) as open_amount_reporting

    from calendar
    cross join line_segment_stages
    left join daily_moves
        on
            calendar.pipeline_date = daily_moves.move_date
            and line_segment_stages.business_line = daily_moves.business_line
            and line_segment_stages.segment = daily_moves.segment
            and line_segment_stages.stage_id = daily_moves.stage_id
    window running_total as (
        partition by line_segment_stages.business_line, line_segment_stages.segment, line_segment_stages.stage_id
        order by calendar.pipeline_date
        rows between unbounded preceding and current row
    )

)

select * from final
