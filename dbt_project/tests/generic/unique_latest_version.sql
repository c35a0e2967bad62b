{#-
    `unique` for a staging view that keeps the latest version of each key, scoped like the tests of
    macros/test_scope.sql: a run whose window holds every extract date (a full build) checks the whole
    view; a daily run checks the keys with a version in its window. Each key's row comes from that
    key's own versions (ranked per key; the integrity keys it is joined with are distinct), so the
    other keys are as the last run checked them. DuckDB does not push a key filter through the view's
    ranking window (at SF10 the whole view took 0.8-2.6 s a test), so the scoped test runs the view's own
    SQL, the macro `staged` it is made of, on those keys' versions: `staged(ids)`, with `ids` a select
    of `ids_column` from the raw table `versions` (a [source, table] pair) in the window.
-#}
{% test unique_latest_version(model, column_name, staged, versions, ids_column) %}

{%- set raw = source(versions[0], versions[1]) -%}
{%- if window_holds_every_row(raw) -%}
    {%- set rows = model -%}
{%- else -%}
    {%- set ids -%}
        select in_window.{{ ids_column }}
        from {{ raw }} as in_window
        where {{ in_extract_window('in_window._extract_date') }}
    {%- endset -%}
    {%- set rows = '(' ~ staged_view_sql(staged, ids) ~ ')' -%}
{%- endif %}

select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ rows }} as scoped_rows
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1

{% endtest %}
