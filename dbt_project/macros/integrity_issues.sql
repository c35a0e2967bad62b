{#-
    Keys the ingestion checks reported for one raw table, as `record_key` (primary-key values joined
    with '|'). action 'exclude' rows must not reach the marts; 'flag' rows pass and are marked.
-#}
{% macro integrity_issue_keys(table_name, action) -%}
    select distinct record_key
    from {{ source('quality', 'integrity_issues') }}
    where
        table_name = '{{ table_name }}'
        and action = '{{ action }}'
        and record_key is not null
{%- endmacro %}
