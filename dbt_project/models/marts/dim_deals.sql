{#-
    A view: the stored deals (int_deals_base, incremental) plus the four columns that move with the
    as-of date, written in as a literal when dbt builds the view (macros/as_of_date.sql). The publish
    step copies it into the BI file as a table, like the other marts.
-#}
{{ config(materialized='view') }}

with

deals as (

    select * from {{ ref('int_deals_base') }}

),

deals_as_of as (

    select
        *,
        {{ as_of_date_literal() }} as as_of_date,
        coalesce(won_at, lost_at) as closed_in_log_at
    from deals

),

final as (

    select
        deal_id,
        client_id,
        business_line,
        owner_id,
        source_channel,
        created_at,
        expected_close_date,
        status,
        crm_status,
        lost_reason,
        current_stage_id,
        current_stage_name,
        current_stage_order,
        current_stage_entered_at,
        won_at,
        lost_at,
        crm_closed_at,
        as_of_date,
        {{ dbt.datediff(
            'cast(created_at as date)',
            'coalesce(cast(closed_in_log_at as date), as_of_date)',
            'day'
        ) }} as age_days,
        {{ dbt.datediff('cast(current_stage_entered_at as date)', 'as_of_date', 'day') }}
            as days_in_current_stage,
        current_stage_sla_days,
        coalesce(
            status = 'open'
            and {{ dbt.datediff('cast(current_stage_entered_at as date)', 'as_of_date', 'day') }}
            > current_stage_sla_days,
            false
        ) as is_sla_breached,
        amount,
        currency,
        fx_rate_to_reporting,
        amount_reporting,
        weighted_amount_reporting,
        stage_change_count,
        skip_count,
        backward_move_count,
        reopen_count,
        has_stage_history,
        has_integrity_flag

    from deals_as_of

)

select * from final
