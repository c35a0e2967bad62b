with

clients as (

    select * from {{ ref('stg_crm__clients') }}

),

final as (

    select
        client_id,
        client_name,
        industry,
        segment,
        use_case,
        employees,
        revenue_band,
        region,
        is_deleted,
        merged_into_client_id,
        has_integrity_flag,
        created_at,
        updated_at

    from clients

)

select * from final
