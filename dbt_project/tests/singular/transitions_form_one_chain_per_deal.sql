{{ config(meta={'dagster': {'ref': {'name': 'fct_stage_transitions'}}}) }}

-- Rule: each deal's transitions form one chain in time: the first has no from-stage, each later one
-- leaves the stage the previous one entered, numbers run 1, 2, 3... and time never goes back.
-- Checked on the deals the run's window touched, all of whose transitions it rewrote (a full build's
-- window touches every deal).
with

transitions as (

    select * from {{ ref('fct_stage_transitions') }}
    where deal_id in (select touched.deal_id from {{ ref('int_deals_touched') }} as touched)

),

chained as (

    select
        *,
        lag(to_stage_id) over (partition by deal_id order by transition_number) as previous_to_stage_id,
        lag(changed_at) over (partition by deal_id order by transition_number) as previous_changed_at,
        row_number() over (partition by deal_id order by changed_at, transition_id) as position_in_time
    from transitions

),

final as (

    select
        deal_id,
        transition_id,
        transition_number,
        from_stage_id,
        previous_to_stage_id,
        changed_at,
        previous_changed_at
    from chained
    where
        (transition_number = 1 and from_stage_id is not null)
        or (transition_number > 1 and from_stage_id is distinct from previous_to_stage_id)
        or changed_at < previous_changed_at
        or transition_number != position_in_time

)

select * from final
