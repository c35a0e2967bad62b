{#-
    A view: the stored grid (int_deal_stages_reached_base, incremental) plus total_days_in_stage, the
    closed spells' days and the open spell's days to the end of the as-of day.
-#}
{{ config(materialized='view') }}

with

reached as (

    select * from {{ ref('int_deal_stages_reached_base') }}

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
        closed_days_in_stage + coalesce(
            {{ days_between('open_spell_entered_at', dbt.dateadd('day', 1, as_of_date_literal())) }}, 0
        ) as total_days_in_stage,
        is_reached,
        is_reached_strict,
        is_skipped

    from reached

)

select * from final
