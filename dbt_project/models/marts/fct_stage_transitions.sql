{#-
    Incremental by the partition window: a run deletes and re-inserts every deal an extract in the
    window may have changed (int_deals_touched). A whole deal is rewritten, not only new events, because
    a corrected or late event changes its neighbours' from-stage and time in stage. Append after the
    pre-hook delete (rather than delete+insert on deal_id) also removes deals that left the funnel.
-#}
-- depends_on: {{ ref('stg_invoicing__fx_rates') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=["{{ delete_touched_keys('deal_id', touched_deal_ids()) }}"]
    )
}}

with

spells as (

    select * from {{ ref('int_deal_stage_spells') }}

),

deals as (

    {{ deals_to_rewrite() }}  -- the touched deals' in an incremental run (macros/staged_crm.sql)

),

clients as (

    select * from {{ ref('stg_crm__clients') }}

),

-- Used only in incremental runs, which the linter does not render.
touched_deals as (  -- noqa: ST03

    select * from {{ ref('int_deals_touched') }}

),

final as (

    select
        spells.spell_id as transition_id,
        spells.deal_id,
        deals.client_id,
        deals.business_line,
        clients.segment,
        deals.owner_id,
        spells.from_stage_id,
        spells.from_stage_order,
        spells.stage_id as to_stage_id,
        spells.stage_order as to_stage_order,
        spells.visit_number as to_stage_visit_number,
        spells.spell_number as transition_number,
        spells.entered_at as changed_at,
        cast({{ dbt.date_trunc('month', 'spells.entered_at') }} as date) as changed_month,
        spells.from_stage_duration_days as from_stage_days,
        spells.entry_direction as direction,
        spells.is_skip,
        spells.is_backward_move,
        spells.is_reopen,
        spells.is_won as is_to_won,
        spells.is_lost as is_to_lost,
        deals.amount_reporting

    from spells
    inner join deals
        on spells.deal_id = deals.deal_id
    left join clients
        on deals.client_id = clients.client_id
    {% if is_incremental() %}
    where spells.deal_id in (select touched_deals.deal_id from touched_deals)
    {% endif %}

)

select * from final
