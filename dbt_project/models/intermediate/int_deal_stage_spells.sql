{#-
    A view: the stored spells (int_deal_stage_spells_base, incremental) plus duration_days, the one figure
    that moves with the as-of date (an open spell is measured to the end of the as-of day: censored, not
    dropped). Storing it would rewrite every deal's last spell every day.
-#}
{{ config(materialized='view') }}

with

spells as (

    select * from {{ ref('int_deal_stage_spells_base') }}

),

final as (

    select
        spell_id,
        deal_id,
        pipeline_id,
        stage_id,
        stage_order,
        is_won,
        is_lost,
        is_terminal,
        spell_number,
        visit_number,
        entered_at,
        exited_at,
        is_open,
        {{ days_between('entered_at', 'coalesce(exited_at, ' ~ dbt.dateadd('day', 1, as_of_date_literal()) ~ ')') }}
            as duration_days,
        from_stage_id,
        from_stage_order,
        from_entered_at,
        from_stage_duration_days,
        entry_direction,
        is_skip,
        is_backward_move,
        is_reopen

    from spells

)

select * from final
