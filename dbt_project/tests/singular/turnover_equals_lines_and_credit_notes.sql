{{ config(meta={'dagster': {'ref': {'name': 'fct_client_turnover'}}}) }}

-- Rule: a client-month's net turnover is the sum of its invoice lines and credit-note lines, and
-- every client-month with lines has a row. Returns the client-months where that fails. Checked on the
-- client-months the run's window touched, the ones it rewrote (a full build's window touches all).
with

touched as (

    select * from {{ ref('int_client_months_touched') }}

),

turnover as (

    select * from {{ ref('fct_client_turnover') }}
    where (client_id, turnover_month) in (
        select
            touched.client_id,
            touched.turnover_month
        from touched
    )

),

line_totals as (

    select
        client_id,
        turnover_month,
        sum(net_amount_reporting) as net_revenue_reporting,
        sum(margin_reporting) as margin_reporting
    from {{ ref('int_invoice_lines_converted') }}
    where (client_id, turnover_month) in (
        select
            touched.client_id,
            touched.turnover_month
        from touched
    )
    group by client_id, turnover_month

),

final as (

    select
        coalesce(turnover.client_id, line_totals.client_id) as client_id,
        coalesce(turnover.turnover_month, line_totals.turnover_month) as turnover_month,
        turnover.net_revenue_reporting as turnover_net_revenue,
        line_totals.net_revenue_reporting as lines_net_revenue
    from turnover
    full outer join line_totals
        on
            turnover.client_id = line_totals.client_id
            and turnover.turnover_month = line_totals.turnover_month
    where
        turnover.client_id is null
        or line_totals.client_id is null
        or turnover.net_revenue_reporting != line_totals.net_revenue_reporting
        or turnover.margin_reporting != line_totals.margin_reporting

)

select * from final
