{#-
    The partition window reaches dbt as vars `min_date` and `max_date` (extract dates, inclusive).
    Without them the window is the whole history, so an incremental run rebuilds everything.
-#}
{% macro in_extract_window(column='_extract_date') -%}
    {%- set min_date = var('min_date', none) -%}
    {%- set max_date = var('max_date', none) -%}
    {%- if min_date is none and max_date is none -%}
        1 = 1
    {%- else -%}
        {%- if min_date is not none %}{{ column }} >= cast('{{ min_date }}' as date){% endif -%}
        {%- if min_date is not none and max_date is not none %} and {% endif -%}
        {%- if max_date is not none %}{{ column }} <= cast('{{ max_date }}' as date){% endif -%}
    {%- endif -%}
{%- endmacro %}
