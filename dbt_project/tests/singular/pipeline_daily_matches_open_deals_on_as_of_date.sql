{{ config(meta={'dagster': {'ref': {'name': 'fct_pipeline_daily'}}}) }}

-- Rule: the daily pipeline rebuilt from spells agrees with the deals' current state on the as-of
-- date: open deals per business line, segment and stage are the same in both.
with

pipeline_on_as_of_date as (

    select
        business_line,
        segment,
        stage_id,
        open_deal_count
    from {{ ref('fct_pipeline_daily') }}
    where pipeline_date = {{ as_of_date() }} and open_deal_count > 0

),

open_deals as (

    select
        dim_deals.business_line,
        coalesce(dim_clients.segment, 'unknown') as segment,
        dim_deals.current_stage_id as stage_id,
        count(*) as open_deal_count
    from {{ ref('dim_deals') }} as dim_deals
    left join {{ ref('dim_clients') }} as dim_clients
        on dim_deals.client_id = dim_clients.client_id
    where dim_deals.status = 'open' and dim_deals.has_stage_history
    group by dim_deals.business_line, coalesce(dim_clients.segment, 'unknown'), dim_deals.current_stage_id

),

final as (

    select
        coalesce(pipeline_on_as_of_date.business_line, open_deals.business_line) as business_line,
        coalesce(pipeline_on_as_of_date.segment, open_deals.segment) as segment,
        coalesce(pipeline_on_as_of_date.stage_id, open_deals.stage_id) as stage_id,
        pipeline_on_as_of_date.open_deal_count as pipeline_open_deal_count,
        open_deals.open_deal_count as dim_open_deal_count
    from pipeline_on_as_of_date
    full outer join open_deals
        on
            pipeline_on_as_of_date.business_line = open_deals.business_line
            and pipeline_on_as_of_date.segment = open_deals.segment
            and pipeline_on_as_of_date.stage_id = open_deals.stage_id
    where pipeline_on_as_of_date.open_deal_count is distinct from open_deals.open_deal_count

)

select * from final
