{#-
    The client-months an incremental run of fct_client_turnover rewrites: the months of every invoice
    (in all its raw versions, so a move to another client or month rewrites the old one too) that an
    extract in the window (vars min_date, max_date) may have changed, and every client-month of a client
    the window changed.
    When neither model that reads it runs incrementally (a first build, or --full-refresh), they rebuild
    every client-month, and so does this table: read straight off the invoice versions. The window's
    joins would otherwise each hold the whole history in memory on a first load (at SF100 they ran out
    of DuckDB's 2GB there).
-#}
{%- set rebuilt = not any_incremental(['fct_client_turnover', 'int_invoice_lines_converted']) %}

with

invoice_versions as (

    select
        invoice_id,
        client_id,
        issue_date,
        currency,
        _extract_date
    from {{ source('invoicing', 'invoices') }}

),
{% if not rebuilt %}

line_versions as (

    select
        invoice_line_id,
        invoice_id,
        _extract_date
    from {{ source('invoicing', 'invoice_lines') }}

),

changed_lines as (

    select distinct invoice_line_id
    from line_versions
    where {{ in_extract_window() }}

),

changed_invoices as (

    select invoice_id
    from invoice_versions
    where {{ in_extract_window() }}

    union

    select line_versions.invoice_id
    from line_versions
    inner join changed_lines
        on line_versions.invoice_line_id = changed_lines.invoice_line_id

),

-- A late or corrected rate changes the turnover of invoices issued on or after its date.
changed_rates as (

    select
        currency,
        min(rate_date) as first_changed_rate_date
    from {{ source('invoicing', 'fx_rates') }}
    where {{ in_extract_window() }}
    group by currency

),

-- A client that arrives after its invoices clears their unknown_client finding.
changed_clients as (

    select client_id
    from {{ source('crm', 'clients') }}
    where {{ in_extract_window() }}

),

touched_invoice_versions as (

    select
        invoice_versions.client_id,
        invoice_versions.issue_date
    from invoice_versions
    inner join changed_invoices
        on invoice_versions.invoice_id = changed_invoices.invoice_id

    union all

    select
        invoice_versions.client_id,
        invoice_versions.issue_date
    from invoice_versions
    inner join changed_rates
        on
            invoice_versions.currency = changed_rates.currency
            and invoice_versions.issue_date >= changed_rates.first_changed_rate_date

    union all

    select
        invoice_versions.client_id,
        invoice_versions.issue_date
    from invoice_versions
    inner join changed_clients
        on invoice_versions.client_id = changed_clients.client_id

),
{% else %}

touched_invoice_versions as (

    select
        client_id,
        issue_date
    from invoice_versions

),
{% endif %}

final as (

    select distinct
        client_id,
        cast({{ dbt.date_trunc('month', 'issue_date') }} as date) as turnover_month
    from touched_invoice_versions

)

select * from final
