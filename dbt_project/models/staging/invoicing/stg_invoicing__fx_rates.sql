with

source as (

    select * from {{ source('invoicing', 'fx_rates') }}

),

excluded_rates as (

    {{ integrity_issue_keys('fx_rates', 'exclude') }}

),

ranked_versions as (

    select
        *,
        {{ dbt.concat([dbt.cast('rate_date', api.Column.translate_type('string')), "'|'", 'currency']) }}
            as record_key,
        {{ latest_version_rank(['rate_date', 'currency']) }} as version_rank
    from source

),

final as (

    select
        cast(rate_date as date) as rate_date,
        cast(currency as varchar) as currency,
        cast(rate_to_reporting as double) as rate_to_reporting

    from ranked_versions
    where
        version_rank = 1
        and record_key not in (select excluded_rates.record_key from excluded_rates)

)

select * from final
