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


{#-
    as_of_date() for a view: the date resolved when dbt builds the view and written into it as a literal,
    so the view reads like a table built in the same run (ingesting the next day does not move it before
    dbt runs again). At parse time, with var `as_of_date`, and before raw exists (the linter compiles
    against an empty database), it is as_of_date() itself.
-#}
{% macro as_of_date_literal() -%}
    {%- if execute and var('as_of_date', none) is none
        and load_relation(source('crm', 'deals')) is not none -%}
        {%- set resolved = run_query('select cast(' ~ as_of_date() ~ ' as varchar)').columns[0].values()[0] -%}
        {%- if resolved is none -%}
            {{ as_of_date() }}
        {%- else -%}
            cast('{{ resolved }}' as date)
        {%- endif -%}
    {%- else -%}
        {{ as_of_date() }}
    {%- endif -%}
{%- endmacro %}
