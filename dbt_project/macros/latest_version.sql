{#-
    Ranks the versions of a key across extracts: 1 = the version that wins (latest extract date, then
    the contract's version column, then the later row of the file). Keep rows where the rank is 1.
-#}
{% macro latest_version_rank(key_columns, version_column=none) -%}
    row_number() over (
        partition by {{ key_columns | join(', ') }}
        order by
            _extract_date desc,
            {%- if version_column %}
            {{ version_column }} desc,
            {%- endif %}
            _source_row desc
    )
{%- endmacro %}
