{#- Fractional days between two timestamps (time in stage is measured to the second). -#}
{% macro days_between(start_at, end_at) -%}
    {{ dbt.datediff(start_at, end_at, 'second') }} / 86400.0
{%- endmacro %}
