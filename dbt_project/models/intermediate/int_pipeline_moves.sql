{#-
    The moves of the daily pipeline, per deal: a spell in an open stage adds the deal (and its amount)
    on the day it is entered and takes it away on the day it is left. fct_pipeline_daily sums them per
    day and keeps a running total per stage, so the daily snapshots read this table instead of joining
    every spell to its deal and client each day.

    Incremental by the partition window, like int_deals_base: a run deletes the moves of the deals in
    int_deals_touched and re-inserts them from those deals' spells. A client's segment and the stage
    catalogue are denormalised here; a change to either touches the deals concerned (int_deals_touched).
-#}
-- depends_on: {{ ref('int_deals_touched') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=["{{ delete_touched_keys('deal_id', touched_deal_ids()) }}"]
    )
}}

with

deals as (

    select * from {{ ref('int_deals_base') }}
    {% if is_incremental() %}
    where deal_id in ({{ touched_deal_ids() }})
    {% endif %}

),

clients as (

    select * from {{ ref('stg_crm__clients') }}

),

spells as (

    select * from {{ ref('int_deal_stage_spells_base') }}
    {% if is_incremental() %}
    where deal_id in ({{ touched_deal_ids() }})
    {% endif %}

),

open_stage_spells as (

    select * from spells
    where not is_terminal

),

deal_segments as (

    select
        deals.deal_id,
        deals.business_line,
        coalesce(clients.segment, 'unknown') as segment,
        coalesce(deals.amount_reporting, 0) as amount_reporting
    from deals
    left join clients
        on deals.client_id = clients.client_id

),

-- A spell's two moves: its entry (+1) and, once it has been left, its exit (-1).
directions as (

    select 1 as deal_delta
    union all
    select -1 as deal_delta

),

final as (

    select
        spells.deal_id,
        deal_segments.business_line,
        deal_segments.segment,
        spells.stage_id,
        cast(
            case when directions.deal_delta = 1 then spells.entered_at else spells.exited_at end as date
        ) as move_date,
        directions.deal_delta,
        case
            when directions.deal_delta = 1 then deal_segments.amount_reporting
            else -deal_segments.amount_reporting
        end as amount_delta
    from open_stage_spells as spells
    inner join deal_segments
        on spells.deal_id = deal_segments.deal_id
    cross join directions
    where directions.deal_delta = 1 or spells.exited_at is not null

)

select * from final
