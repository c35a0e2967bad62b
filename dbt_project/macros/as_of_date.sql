{#-
    "Today" of a run: var `as_of_date`, else the latest extract date loaded in raw. Never the wall
    clock, so re-running an old partition gives the same ages and the same daily pipeline.
-#}
{% macro as_of_date() -%}
    {%- if var('as_of_date', none) is not none -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- else -%}
        (
            select max(latest_extracts._extract_date)
            from (
                select max(_extract_date) as _extract_date from {{ source('crm', 'deals') }}
                union all
                select max(_extract_date) as _extract_date from {{ source('crm', 'deal_stage_history') }}
                union all
                select max(_extract_date) as _extract_date from {{ source('invoicing', 'invoices') }}
            ) as latest_extracts
        )
    {%- endif -%}
{%- endmacro %}
