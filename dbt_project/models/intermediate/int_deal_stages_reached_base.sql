{#-
    The reached grid as stored: every figure of int_deal_stages_reached except time in stage, which
    moves with the as-of date while a spell is open; it is stored as the closed spells' days plus the
    open spell's entry, and the view int_deal_stages_reached adds them up on read.

    Incremental by the partition window, like int_deal_stage_spells_base: a run deletes and rebuilds the
    grid rows of the deals in int_deals_touched.
-#}
-- depends_on: {{ ref('int_deals_touched') }}
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

deals as (

    {{ deals_to_rewrite() }}  -- the touched deals' in an incremental run (macros/staged_crm.sql)

),

stages as (

    select * from {{ ref('stg_crm__stages') }}

),

spells as (

    select * from {{ ref('int_deal_stage_spells_base') }}
    {% if is_incremental() %}
    where deal_id in ({{ touched_deal_ids() }})
    {% endif %}

),

stage_entries as (

    select
        deal_id,
        stage_id,
        min(entered_at) as first_entered_at,
        count(*) as visit_count,
        sum(case when not is_open then {{ days_between('entered_at', 'exited_at') }} else 0 end)
            as closed_days_in_stage,
        max(case when is_open then entered_at end) as open_spell_entered_at
    from spells
    group by deal_id, stage_id

),

-- How far each deal got: the highest stage it entered, lost stages aside (a lost deal reached only
-- the stages before it was lost).
deal_progress as (

    select
        deal_id,
        max(case when not is_lost then stage_order end) as furthest_stage_order
    from spells
    group by deal_id

),

-- Every current (not deleted) stage of the deal's pipeline.
deal_stage_grid as (

    select
        deals.deal_id,
        stages.pipeline_id,
        stages.stage_id,
        stages.stage_order,
        stages.is_won,
        stages.is_lost,
        stage_entries.first_entered_at,
        coalesce(stage_entries.visit_count, 0) as visit_count,
        coalesce(stage_entries.closed_days_in_stage, 0) as closed_days_in_stage,
        stage_entries.open_spell_entered_at,
        stage_entries.first_entered_at is not null as has_entered,
        deal_progress.furthest_stage_order
    from deals
    inner join stages
        on deals.pipeline_id = stages.pipeline_id
    left join stage_entries
        on
            deals.deal_id = stage_entries.deal_id
            and stages.stage_id = stage_entries.stage_id
    left join deal_progress
        on deals.deal_id = deal_progress.deal_id
    where not stages.is_deleted

),

-- Strict funnel, along the open stages and won: a stage counts when it was entered after every
-- earlier stage was entered, in stage order.
ordered_entries as (

    select
        *,
        case
            when not has_entered then 1
            when first_entered_at < max(first_entered_at) over (
                partition by deal_id, is_lost
                order by stage_order
                rows between unbounded preceding and 1 preceding
            ) then 1
            else 0
        end as is_out_of_sequence
    from deal_stage_grid

),

sequence_checks as (

    select
        *,
        sum(is_out_of_sequence) over (
            partition by deal_id, is_lost
            order by stage_order
            rows between unbounded preceding and current row
        ) as broken_sequence_count
    from ordered_entries

),

final as (

    select
        deal_id,
        pipeline_id,
        stage_id,
        stage_order,
        is_won,
        is_lost,
        has_entered,
        first_entered_at,
        visit_count,
        closed_days_in_stage,
        open_spell_entered_at,
        case
            when is_lost then has_entered
            else has_entered or coalesce(furthest_stage_order >= stage_order, false)
        end as is_reached,
        case
            when is_lost then has_entered
            else broken_sequence_count = 0
        end as is_reached_strict,
        not is_lost and not has_entered and coalesce(furthest_stage_order > stage_order, false)
            as is_skipped

    from sequence_checks

)

select * from final
