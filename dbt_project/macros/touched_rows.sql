{#-
    The pre-hook of a model incremental by the partition window: in an incremental run, delete the rows
    the window touched; the model then appends them rebuilt, so a deal that left the funnel, or a
    client-month that lost its invoices, is emptied. Nothing on a full build. `delete_touched_keys`
    deletes the rows whose `key` is in `touched_ids` (a select, e.g. touched_deal_ids()).
    Qualifying columns with the bare table name in `delete ... where exists` is DuckDB/Postgres syntax.
-#}
{% macro delete_touched_keys(key, touched_ids) -%}
    {%- if is_incremental() %}
    delete from {{ this }}
    where {{ key }} in ({{ touched_ids }})
    {%- endif %}
{%- endmacro %}


{% macro delete_touched_client_months() -%}
    {%- if is_incremental() %}
    delete from {{ this }}
    where exists (
        select 1
        from {{ ref('int_client_months_touched') }} as touched
        where
            touched.client_id = {{ this.identifier }}.client_id
            and touched.turnover_month = {{ this.identifier }}.turnover_month
    )
    {%- endif %}
{%- endmacro %}


{#- The deals the window touched, as a select for `deal_id in (...)`. `touched`: the relation of
    int_deals_touched when ref() cannot be used (a test's `where`, macros/test_scope.sql). -#}
{% macro touched_deal_ids(touched=none) -%}
    select touched.deal_id from {{ touched or ref('int_deals_touched') }} as touched
{%- endmacro %}


{#-
    The activities an incremental run of stg_crm__activities rewrites: those with a version in the
    window, and every activity that was ever on a deal the window touched. `activities` and
    `touched_deals`: the relations, for where source() and ref() cannot be used (a test's `where`).
-#}
{% macro touched_activity_ids(activities=none, touched_deals=none) -%}
    select changed.activity_id
    from {{ activities or source('crm', 'activities') }} as changed
    where
        {{ in_extract_window('changed._extract_date') }}
        or changed.deal_id in ({{ touched_deal_ids(touched_deals) }})
{%- endmacro %}


{#-
    Whether any of these models (by name) runs incrementally in this invocation: its table exists and
    the run is not a --full-refresh. Looked up in the graph, as a model upstream of them cannot ref them.
-#}
{% macro any_incremental(model_names) -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {%- do return(false) -%}
    {%- endif -%}
    {%- for name in model_names -%}
        {%- set relation = model_relation(name) -%}
        {%- if adapter.get_relation(
            database=relation.database, schema=relation.schema, identifier=relation.identifier
        ) is not none -%}
            {%- do return(true) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return(false) -%}
{%- endmacro %}
