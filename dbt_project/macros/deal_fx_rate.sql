{#-
    A deal's amount converts to the reporting currency at the rate of the day the deal was created, or
    the latest earlier rate; the reporting currency itself at 1. `deals` and `fx_rates` name CTEs (the
    latter stg_invoicing__fx_rates); the select returns every column of `deals` plus
    fx_rate_to_reporting. One rule for today's amount (stg_crm__deals) and for the amounts of every
    version (int_deal_amounts_known), so the two always agree. ASOF JOIN is DuckDB syntax.
-#}
{% macro deals_with_fx_rate(deals, fx_rates) -%}
    select
        {{ deals }}.*,
        case
            when {{ deals }}.currency = '{{ var("reporting_currency") }}' then 1.0
            else {{ fx_rates }}.rate_to_reporting
        end as fx_rate_to_reporting
    from {{ deals }}
    asof left join {{ fx_rates }}
        on
            {{ deals }}.currency = {{ fx_rates }}.currency
            and cast({{ deals }}.created_at as date) >= {{ fx_rates }}.rate_date
{%- endmacro %}
