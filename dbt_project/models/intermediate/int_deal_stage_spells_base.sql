{#-
    The spells as stored: every figure of int_deal_stage_spells except the one that moves with the as-of
    date (duration_days of an open spell), which the view int_deal_stage_spells adds on read.

    Incremental by the partition window: a run deletes the spells of the deals in int_deals_touched and
    re-inserts them, from those deals' events only: only their versions are ranked (the staging SQL
    called with a filter, macros/staged_crm.sql). Without a window (a full build) every deal is touched.
-#}
-- depends_on: {{ ref('int_deals_touched') }}
-- The staging SQL of an incremental run reads the rates, as the views do (macros/staged_crm.sql).
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

{% if is_incremental() %}
{%- set touched_deal_event_ids -%}
    select event_versions.event_id
    from {{ source('crm', 'deal_stage_history') }} as event_versions
    where event_versions.deal_id in ({{ touched_deal_ids() }})
{%- endset %}

-- Every event that ever had a version on a touched deal, its versions ranked (the staging SQL called
-- with a filter, macros/staged_crm.sql), then those whose latest version is on a touched deal: the
-- rows stg_crm__deal_stage_changes has for these deals, without ranking every event.
touched_deal_events as (

    {{ staged_deal_stage_changes(touched_deal_event_ids) }}

),

stage_changes as (

    select * from touched_deal_events
    where deal_id in ({{ touched_deal_ids() }})

),

{% else %}

stage_changes as (

    select * from {{ ref('stg_crm__deal_stage_changes') }}

),

{% endif %}

deals as (

    {{ deals_to_rewrite() }}

),

stages as (

    select * from {{ ref('stg_crm__stages') }}

),

-- Events of deals in the funnel (not deleted, not excluded) into stages the catalogue knows.
funnel_events as (

    select
        stage_changes.event_id,
        stage_changes.deal_id,
        stage_changes.pipeline_id,
        stage_changes.stage_id,
        stage_changes.changed_at,
        stages.stage_order,
        stages.is_won,
        stages.is_lost,
        stages.is_terminal
    from stage_changes
    inner join deals
        on stage_changes.deal_id = deals.deal_id
    inner join stages
        on
            stage_changes.pipeline_id = stages.pipeline_id
            and stage_changes.stage_id = stages.stage_id

),

-- Ties on changed_at are broken by event_id, so the order is the same on every run.
sequenced_events as (

    select
        *,
        lag(stage_id) over (
            partition by deal_id order by changed_at, event_id
        ) as previous_event_stage_id
    from funnel_events

),

-- A repeated event for the stage the deal is already in is no change: the spell goes on.
spell_starts as (

    select *
    from sequenced_events
    where previous_event_stage_id is null or previous_event_stage_id != stage_id

),

spells as (

    select
        event_id as spell_id,
        deal_id,
        pipeline_id,
        stage_id,
        stage_order,
        is_won,
        is_lost,
        is_terminal,
        changed_at as entered_at,
        lead(changed_at) over (partition by deal_id order by changed_at, event_id) as exited_at,
        lag(stage_id) over (partition by deal_id order by changed_at, event_id) as from_stage_id,
        lag(stage_order) over (partition by deal_id order by changed_at, event_id) as from_stage_order,
        lag(is_terminal) over (partition by deal_id order by changed_at, event_id) as from_is_terminal,
        lag(changed_at) over (partition by deal_id order by changed_at, event_id) as from_entered_at,
        row_number() over (partition by deal_id order by changed_at, event_id) as spell_number,
        row_number() over (partition by deal_id, stage_id order by changed_at, event_id) as visit_number
    from spell_starts

),

classified_spells as (

    select
        *,
        case
            when from_stage_id is null then 'enter'
            when from_is_terminal and not is_terminal then 'reopen'
            when is_won then 'won'
            when is_lost then 'lost'
            when stage_order < from_stage_order then 'backward'
            when stage_order > from_stage_order + 1 then 'skip'
            else 'forward'
        end as entry_direction
    from spells

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
        exited_at is null as is_open,
        from_stage_id,
        from_stage_order,
        from_entered_at,
        {{ days_between('from_entered_at', 'entered_at') }} as from_stage_duration_days,
        entry_direction,
        entry_direction = 'skip' as is_skip,
        entry_direction = 'backward' as is_backward_move,
        entry_direction = 'reopen' as is_reopen

    from classified_spells

)

select * from final
