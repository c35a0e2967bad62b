{#-
    The partition window: extract dates `min_date` and `max_date`, inclusive. Dagster hands them over as
    environment variables FUNNEL_DBT_MIN_DATE and FUNNEL_DBT_MAX_DATE; by hand, `--vars` works too and
    wins. Without either, the window is the whole history, so an incremental run rebuilds everything.

    The environment is read only when executing, never while dbt parses: a window given as `--vars`, or
    an env var read at parse time, is part of what partial parsing compares, so every run on a new day
    re-parsed the whole project (about 2 s at any scale) instead of reusing partial_parse.msgpack.
-#}
{% macro extract_window_bound(name) -%}
    {%- set value = var(name, none) -%}
    {%- if value is none and execute -%}
        {%- set value = env_var('FUNNEL_DBT_' ~ name | upper, '') or none -%}
    {%- endif -%}
    {%- do return(value) -%}
{%- endmacro %}


{% macro in_extract_window(column='_extract_date') -%}
    {%- set min_date = extract_window_bound('min_date') -%}
    {%- set max_date = extract_window_bound('max_date') -%}
    {%- if min_date is none and max_date is none -%}
        1 = 1
    {%- else -%}
        {%- if min_date is not none %}{{ column }} >= cast('{{ min_date }}' as date){% endif -%}
        {%- if min_date is not none and max_date is not none %} and {% endif -%}
        {%- if max_date is not none %}{{ column }} <= cast('{{ max_date }}' as date){% endif -%}
    {%- endif -%}
{%- endmacro %}
