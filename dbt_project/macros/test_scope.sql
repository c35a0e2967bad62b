{#-
    Data tests on the large tables a run rebuilds or rewrites by its partition window check the rows
    that window touched, as the incremental facts rewrite them (a full build's window is the whole
    dump, so it checks every row; a daily run checks what the new day changed, not the history).
    A test opts in with `config: {where: "__touched_deals__"}`, `"__touched_client_months__"` or
    `"__touched_activities__"`, replaced here, at run time, by the deals of int_deals_touched / the
    client-months of int_client_months_touched as this run built them (the tested models depend on
    them, so they are built first) / the activities the run rewrote in stg_crm__activities (those
    with a version in the window and those of a touched deal, as its pre-hook deletes them). Rows with
    an empty key are always checked, so not_null on the key still bites.
    Any other `where` works as in dbt's own get_where_subquery, which this replaces.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if not where -%}
        {%- do return(relation) -%}
    {%- endif -%}
    {%- set touched_deals -%}
        (deal_id is null or deal_id in (select deal_id from {{ model_relation('int_deals_touched') }}))
    {%- endset -%}
    {%- set touched_client_months -%}
        (client_id is null or turnover_month is null or (client_id, turnover_month) in (
            select client_id, turnover_month from {{ model_relation('int_client_months_touched') }}))
    {%- endset -%}
    {%- set activities = source_relation('crm', 'activities') -%}
    {%- set touched_activities -%}
        (activity_id is null or activity_id in (
            {{ touched_activity_ids(activities, model_relation('int_deals_touched')) }}))
    {%- endset -%}
    {#- A window holding every extract date (a full build) rewrote every activity: no filter, which
        would only cost (at SF10, 5 s against 2 s for the whole table). -#}
    {%- if '__touched_activities__' in where and window_holds_every_row(activities) -%}
        {%- set touched_activities = '(1 = 1)' -%}
    {%- endif -%}
    {%- set where = where
        | replace('__touched_deals__', touched_deals)
        | replace('__touched_client_months__', touched_client_months)
        | replace('__touched_activities__', touched_activities) -%}
    {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
{%- endmacro %}


{#- The relation a model of this project is built in, looked up in the graph (no ref: a test's `where`
    cannot add a dependency). While parsing, the graph is not there yet: the name stands in. -#}
{% macro model_relation(name) -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.package_name == project_name and node.name == name -%}
            {%- do return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return(name) -%}
{%- endmacro %}


{#- The relation of a source table of this project, looked up in the graph like model_relation. -#}
{% macro source_relation(source_name, table_name) -%}
    {%- for node in graph.sources.values() -%}
        {%- if node.package_name == project_name and node.source_name == source_name
            and node.name == table_name -%}
            {%- do return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.identifier)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return(source_name ~ '.' ~ table_name) -%}
{%- endmacro %}


{#- Whether every row of `relation` (a raw table) has its extract date in the run's window. -#}
{% macro window_holds_every_row(relation) -%}
    {%- if not execute -%}
        {%- do return(false) -%}
    {%- endif -%}
    {%- set query -%}
        select not exists (select 1 from {{ relation }} where not ({{ in_extract_window('_extract_date') }}))
    {%- endset -%}
    {%- do return(run_query(query).columns[0].values()[0]) -%}
{%- endmacro %}


{#- The SQL of a staging view for a few keys (tests/generic/unique_latest_version.sql): the macro
    `staged` it is made of, called with `ids`. dbt gives a test only the macros its
    text calls, so each is called here by name, not looked up. -#}
{% macro staged_view_sql(staged, ids) -%}
    {%- if staged == 'staged_invoices' -%}
        {{ staged_invoices(ids) }}
    {%- elif staged == 'staged_invoice_lines' -%}
        {{ staged_invoice_lines(ids) }}
    {%- elif staged == 'staged_deals' -%}
        {{ staged_deals(ids) }}
    {%- elif staged == 'staged_deal_stage_changes' -%}
        {{ staged_deal_stage_changes(ids) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error("unique_latest_version: no staging macro " ~ staged) }}
    {%- endif -%}
{%- endmacro %}
