with

source as (

    select * from {{ source('invoicing', 'invoice_lines') }}

),

excluded_lines as (

    {{ integrity_issue_keys('invoice_lines', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ latest_version_rank(['invoice_line_id'], 'updated_at') }} as version_rank
    from source

),

final as (

    select
        cast(invoice_line_id as varchar) as invoice_line_id,
        cast(invoice_id as varchar) as invoice_id,
        cast(line_number as bigint) as line_number,
        cast(product_id as varchar) as product_id,
        cast(product_category as varchar) as product_category,
        cast(quantity as decimal(18, 4)) as quantity,
        cast(unit_price as decimal(18, 4)) as unit_price,
        cast(list_price as decimal(18, 4)) as list_price,
        cast(unit_cost as decimal(18, 4)) as unit_cost,
        cast(updated_at as timestamp) as updated_at,
        _extract_date as extract_date

    from ranked_versions
    where
        version_rank = 1
        and invoice_line_id not in (select excluded_lines.record_key from excluded_lines)

)

select * from final
