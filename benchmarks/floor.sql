-- The floor: the five dbt marts computed by plain DuckDB SQL straight from the extract files, with no
-- orchestration, no raw layer, no quarantine table, no tests and no per-model round trips. It is what
-- the engine underneath can do; `make bench` times it beside the pipeline (benchmarks/floor.py runs it).
--
-- Needs two variables: `landing` (the folder of YYYY-MM-DD extract folders) and `reporting_currency`.
-- Same grains and core columns as marts.fct_stage_transitions, fct_client_turnover, dim_deals,
-- dim_clients and fct_pipeline_daily; the same exclusions as far as they change rows:
--   * row rules of the contract that the generator's defects break on these tables (required values,
--     allowed values, ranges, the tables' row rules) drop the row, as quarantine does;
--   * latest version per key: latest extract date, then the version column, then the later file row;
--   * the `exclude` integrity rules (unknown client / deal / stage / invoice / currency, event before
--     the deal was created, duplicate invoice number), over the latest valid version of every key;
--   * deleted deals leave the funnel with their events; deleted clients stay.
-- Left out: `flag` findings (has_integrity_flag) and lineage columns. Activities, owners and targets are
-- not read: no mart here needs them (the pipeline loads them for the Polars assets).
-- The daily pipeline uses a running sum of spell entries and exits per day instead of a range join of
-- spells against the calendar: same figures, linear in days + spells rather than their product.

-- ------------------------------------------------------------------------------------------ sources
-- Typed first, then the row rules on the typed values: a value that does not parse is empty, so a
-- required one drops the row (quarantine's invalid_value / missing_value).

create or replace temp view src_clients as
select * from (
    select
        client_id, client_name, industry, segment, use_case, try_cast(employees as bigint) as employees,
        revenue_band, region, try_cast(is_deleted as boolean) as is_deleted, merged_into_client_id,
        cast(try_cast(created_at as timestamptz) as timestamp) as created_at,
        cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/clients.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    client_id is not null and client_name is not null and industry is not null and segment is not null
    and use_case is not null and region is not null and is_deleted is not null
    and created_at is not null and updated_at is not null
    and coalesce(employees >= 0, true)
    and coalesce(revenue_band in ('small', 'medium', 'large', 'enterprise'), true);

create or replace temp view src_stage_catalogue as
select * from (
    select
        pipeline_id, stage_id, stage_name, try_cast(stage_order as bigint) as stage_order,
        try_cast(is_won as boolean) as is_won, try_cast(is_lost as boolean) as is_lost,
        try_cast(probability as double) as probability, try_cast(sla_days as bigint) as sla_days,
        try_cast(is_deleted as boolean) as is_deleted,
        cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/stage_catalogue.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    pipeline_id is not null and stage_id is not null and stage_name is not null and stage_order >= 1
    and is_won is not null and is_lost is not null and probability between 0 and 100
    and coalesce(sla_days >= 0, true) and is_deleted is not null and updated_at is not null
    and not (is_won and is_lost);

create or replace temp view src_deals as
select * from (
    select
        deal_id, client_id, business_line, owner_id, source_channel, try_cast(amount as double) as amount,
        currency,
        cast(try_cast(created_at as timestamptz) as timestamp) as created_at,
        try_cast(expected_close_date as date) as expected_close_date,
        status, lost_reason,
        cast(try_cast(closed_at as timestamptz) as timestamp) as closed_at,
        try_cast(is_deleted as boolean) as is_deleted,
        cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/deals.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    deal_id is not null and client_id is not null and business_line is not null and owner_id is not null
    and source_channel in ('inbound', 'outbound', 'referral', 'partner', 'event', 'existing_client')
    and coalesce(amount >= 0, true) and currency is not null and created_at is not null
    and status in ('open', 'won', 'lost') and is_deleted is not null and updated_at is not null
    and not coalesce(closed_at < created_at, false)
    and not (status = 'won' and coalesce(amount, 0) = 0)
    and not (status in ('won', 'lost') and closed_at is null);

create or replace temp view src_deal_stage_history as
select * from (
    select
        event_id, deal_id, pipeline_id, stage_id,
        cast(try_cast(changed_at as timestamptz) as timestamp) as changed_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/deal_stage_history.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    event_id is not null and deal_id is not null and pipeline_id is not null and stage_id is not null
    and changed_at is not null;

create or replace temp view src_invoices as
select * from (
    select
        invoice_id, invoice_number, client_id, deal_id, try_cast(issue_date as date) as issue_date, currency,
        try_cast(is_credit_note as boolean) as is_credit_note, original_invoice_id,
        cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/invoices.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    invoice_id is not null and invoice_number is not null and client_id is not null
    and issue_date is not null and currency is not null and is_credit_note is not null
    and updated_at is not null
    and not (is_credit_note and original_invoice_id is null);

create or replace temp view src_invoice_lines as
select * from (
    select
        invoice_line_id, invoice_id, try_cast(line_number as bigint) as line_number, product_id,
        product_category, try_cast(quantity as double) as quantity, try_cast(unit_price as double) as unit_price,
        try_cast(list_price as double) as list_price, try_cast(unit_cost as double) as unit_cost,
        cast(try_cast(updated_at as timestamptz) as timestamp) as updated_at,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/invoice_lines.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where
    invoice_line_id is not null and invoice_id is not null and line_number >= 1
    and product_id is not null and product_category is not null and quantity is not null
    and unit_price >= 0 and list_price >= 0 and unit_cost >= 0 and updated_at is not null;

create or replace temp view src_fx_rates as
select * from (
    select
        try_cast(rate_date as date) as rate_date, currency, try_cast(rate_to_reporting as double) as rate_to_reporting,
        cast(regexp_extract(filename, '(\d{4}-\d{2}-\d{2})[/\\][^/\\]+$', 1) as date) as _extract_date,
        file_row_number + 1 as _source_row
    from read_parquet(getvariable('landing') || '/*/fx_rates.parquet', filename = true, file_row_number = true, union_by_name = true)
)
where rate_date is not null and currency is not null and rate_to_reporting >= 0.000001;

-- ------------------------------------------------------------------------------- latest versions

create or replace temp table latest_clients as
select * exclude (_source_row) from src_clients
qualify row_number() over (partition by client_id order by _extract_date desc, updated_at desc, _source_row desc) = 1;

create or replace temp table latest_stages as
select * exclude (_source_row) from src_stage_catalogue
qualify row_number() over (
    partition by pipeline_id, stage_id order by _extract_date desc, updated_at desc, _source_row desc
) = 1;

create or replace temp table latest_deals as
select * exclude (_source_row) from src_deals
qualify row_number() over (partition by deal_id order by _extract_date desc, updated_at desc, _source_row desc) = 1;

create or replace temp table latest_events as
select * exclude (_source_row) from src_deal_stage_history
qualify row_number() over (partition by event_id order by _extract_date desc, changed_at desc, _source_row desc) = 1;

create or replace temp table latest_invoices as
select * exclude (_source_row) from src_invoices
qualify row_number() over (partition by invoice_id order by _extract_date desc, updated_at desc, _source_row desc) = 1;

create or replace temp table fx_rates as
select rate_date, currency, rate_to_reporting from src_fx_rates
qualify row_number() over (partition by rate_date, currency order by _extract_date desc, _source_row desc) = 1;

-- "Today": the latest extract date of deals, stage history and invoices.
set variable as_of = (
    select max(d) from (
        select max(_extract_date) as d from latest_deals
        union all select max(_extract_date) from latest_events
        union all select max(_extract_date) from latest_invoices
    )
);

-- ------------------------------------------------------------------------------- staged entities

create or replace temp table stages as
select
    s.pipeline_id, s.stage_id, s.stage_name, s.stage_order, s.is_won, s.is_lost, s.is_won or s.is_lost as is_terminal,
    s.probability / case when max(s.probability) over (partition by s.pipeline_id) > 1 then 100.0 else 1.0 end
        as win_probability,
    s.sla_days, s.is_deleted
from latest_stages as s;

-- Deals of unknown clients are excluded; deleted deals leave the funnel.
create or replace temp table deals as
select
    d.deal_id, d.client_id, d.business_line, d.owner_id, d.source_channel,
    cast(d.amount as decimal(18, 4)) as amount, d.currency,
    case when d.currency = getvariable('reporting_currency') then 1.0 else fx.rate_to_reporting end
        as fx_rate_to_reporting,
    cast(cast(d.amount as decimal(18, 4)) * case when d.currency = getvariable('reporting_currency') then 1.0 else fx.rate_to_reporting end
        as decimal(18, 4)) as amount_reporting,
    d.created_at, d.expected_close_date, d.status as crm_status, d.lost_reason, d.closed_at
from latest_deals as d
asof left join fx_rates as fx on d.currency = fx.currency and cast(d.created_at as date) >= fx.rate_date
where not d.is_deleted and d.client_id in (select client_id from latest_clients);

-- Events of deals in the funnel into stages the catalogue knows, not before the deal was created.
create or replace temp table spells as
with events as (
    select e.event_id, e.deal_id, e.pipeline_id, e.stage_id, e.changed_at,
           s.stage_order, s.is_won, s.is_lost, s.is_terminal
    from latest_events as e
    inner join latest_deals as raw_deal on e.deal_id = raw_deal.deal_id and e.changed_at >= raw_deal.created_at
    inner join deals on e.deal_id = deals.deal_id
    inner join stages as s on e.pipeline_id = s.pipeline_id and e.stage_id = s.stage_id
),
starts as (
    select * from events
    qualify coalesce(lag(stage_id) over (partition by deal_id order by changed_at, event_id) != stage_id, true)
),
sequenced as (
    select
        *,
        lead(changed_at) over w as exited_at,
        lag(stage_id) over w as from_stage_id,
        lag(stage_order) over w as from_stage_order,
        lag(is_terminal) over w as from_is_terminal,
        lag(changed_at) over w as from_entered_at,
        row_number() over w as spell_number,
        row_number() over (partition by deal_id, stage_id order by changed_at, event_id) as visit_number
    from starts
    window w as (partition by deal_id order by changed_at, event_id)
)
select
    event_id as spell_id, deal_id, pipeline_id, stage_id, stage_order, is_won, is_lost, is_terminal,
    spell_number, visit_number, changed_at as entered_at, exited_at, exited_at is null as is_open,
    date_diff('second', changed_at, coalesce(exited_at, getvariable('as_of') + interval 1 day)) / 86400.0
        as duration_days,
    from_stage_id, from_stage_order,
    date_diff('second', from_entered_at, changed_at) / 86400.0 as from_stage_duration_days,
    case
        when from_stage_id is null then 'enter'
        when from_is_terminal and not is_terminal then 'reopen'
        when is_won then 'won'
        when is_lost then 'lost'
        when stage_order < from_stage_order then 'backward'
        when stage_order > from_stage_order + 1 then 'skip'
        else 'forward'
    end as direction
from sequenced;

-- ------------------------------------------------------------------------------------------- marts

create schema if not exists marts;

create or replace table marts.dim_clients as
select
    client_id, client_name, industry, segment, use_case, try_cast(employees as bigint) as employees,
    revenue_band, region, try_cast(is_deleted as boolean) as is_deleted, merged_into_client_id, created_at, updated_at
from latest_clients;

create or replace table marts.fct_stage_transitions as
select
    sp.spell_id as transition_id, sp.deal_id, d.client_id, d.business_line, c.segment, d.owner_id,
    sp.from_stage_id, sp.from_stage_order, sp.stage_id as to_stage_id, sp.stage_order as to_stage_order,
    sp.visit_number as to_stage_visit_number, sp.spell_number as transition_number,
    sp.entered_at as changed_at, cast(date_trunc('month', sp.entered_at) as date) as changed_month,
    sp.from_stage_duration_days as from_stage_days, sp.direction,
    sp.direction = 'skip' as is_skip, sp.direction = 'backward' as is_backward_move,
    sp.direction = 'reopen' as is_reopen, sp.is_won as is_to_won, sp.is_lost as is_to_lost,
    d.amount_reporting
from spells as sp
inner join deals as d on sp.deal_id = d.deal_id
left join latest_clients as c on d.client_id = c.client_id;

create or replace table marts.dim_deals as
with counts as (
    select
        deal_id,
        count(*) - 1 as stage_change_count,
        count(*) filter (where direction = 'skip') as skip_count,
        count(*) filter (where direction = 'backward') as backward_move_count,
        count(*) filter (where direction = 'reopen') as reopen_count
    from spells group by deal_id
),
as_of as (
    select
        d.*,
        cur.stage_id as current_stage_id, s.stage_name as current_stage_name,
        cur.stage_order as current_stage_order, cur.entered_at as current_stage_entered_at,
        s.sla_days as current_stage_sla_days, s.win_probability,
        case
            when cur.is_won then 'won' when cur.is_lost then 'lost' when cur.spell_id is not null then 'open'
            else d.crm_status
        end as status,
        coalesce(n.stage_change_count, 0) as stage_change_count, coalesce(n.skip_count, 0) as skip_count,
        coalesce(n.backward_move_count, 0) as backward_move_count, coalesce(n.reopen_count, 0) as reopen_count,
        cur.spell_id is not null as has_stage_history
    from deals as d
    left join spells as cur on d.deal_id = cur.deal_id and cur.is_open
    left join stages as s on cur.pipeline_id = s.pipeline_id and cur.stage_id = s.stage_id
    left join counts as n on d.deal_id = n.deal_id
),
closed as (
    select *, case when status in ('won', 'lost') then coalesce(current_stage_entered_at, closed_at) end as closed_in_log_at
    from as_of
)
select
    deal_id, client_id, business_line, owner_id, source_channel, created_at, expected_close_date, status,
    crm_status, lost_reason, current_stage_id, current_stage_name, current_stage_order,
    current_stage_entered_at,
    case when status = 'won' then closed_in_log_at end as won_at,
    case when status = 'lost' then closed_in_log_at end as lost_at,
    getvariable('as_of') as as_of_date,
    date_diff('day', cast(created_at as date), coalesce(cast(closed_in_log_at as date), getvariable('as_of'))) as age_days,
    date_diff('day', cast(current_stage_entered_at as date), getvariable('as_of')) as days_in_current_stage,
    current_stage_sla_days,
    coalesce(
        status = 'open'
        and date_diff('day', cast(current_stage_entered_at as date), getvariable('as_of')) > current_stage_sla_days,
        false
    ) as is_sla_breached,
    amount, currency, fx_rate_to_reporting, amount_reporting,
    cast(case when status = 'open' then amount_reporting * win_probability end as decimal(18, 4))
        as weighted_amount_reporting,
    stage_change_count, skip_count, backward_move_count, reopen_count, has_stage_history
from closed;

create or replace temp table latest_lines as
select * exclude (_source_row) from src_invoice_lines
qualify row_number() over (
    partition by invoice_line_id order by _extract_date desc, updated_at desc, _source_row desc
) = 1;

-- Invoices of unknown clients or currencies, and later invoices reusing a number, are excluded (the
-- number rule ranks every latest invoice, as the integrity rule does); lines of unknown invoices drop
-- out with the inner join. Summed per invoice first, then per client-month: counting invoices then
-- needs no distinct (distinct counts over 12M client-months ran out of 2 GB at SF100).
create or replace temp table invoice_totals as
with numbered as (
    select
        *,
        row_number() over (partition by invoice_number order by issue_date, updated_at, invoice_id) as nth
    from latest_invoices
),
invoices as (
    select
        i.invoice_id, i.client_id, i.issue_date, i.is_credit_note,
        case when i.currency = getvariable('reporting_currency') then 1.0 else fx.rate_to_reporting end
            as fx_rate_to_reporting
    from numbered as i
    asof left join fx_rates as fx on i.currency = fx.currency and i.issue_date >= fx.rate_date
    where
        i.nth = 1
        and i.client_id in (select client_id from latest_clients)
        and (i.currency = getvariable('reporting_currency') or i.currency in (select currency from fx_rates))
)
select
    i.invoice_id, i.client_id, cast(date_trunc('month', i.issue_date) as date) as turnover_month,
    i.issue_date, i.is_credit_note,
    sum(cast(l.quantity as decimal(18, 4))) as quantity,
    sum(cast(cast(l.quantity as decimal(18, 4)) * cast(l.unit_price as decimal(18, 4)) * i.fx_rate_to_reporting
        as decimal(18, 4))) as net_amount,
    sum(cast(cast(l.quantity as decimal(18, 4)) * cast(l.list_price as decimal(18, 4)) * i.fx_rate_to_reporting
        as decimal(18, 4))) as list_amount,
    sum(cast(cast(l.quantity as decimal(18, 4))
        * (cast(l.unit_price as decimal(18, 4)) - cast(l.unit_cost as decimal(18, 4))) * i.fx_rate_to_reporting
        as decimal(18, 4))) as margin
from latest_lines as l
inner join invoices as i on l.invoice_id = i.invoice_id
group by i.invoice_id, i.client_id, i.issue_date, i.is_credit_note;

create or replace table marts.fct_client_turnover as
select
    client_id, turnover_month,
    sum(net_amount) as net_revenue_reporting,
    sum(case when not is_credit_note then net_amount else 0 end) as invoiced_revenue_reporting,
    sum(case when is_credit_note then net_amount else 0 end) as credit_note_amount_reporting,
    sum(margin) as margin_reporting,
    count(*) filter (where not is_credit_note) as invoice_count,
    count(*) filter (where is_credit_note) as credit_note_count,
    sum(quantity) as net_quantity,
    1 - (
        sum(case when not is_credit_note then net_amount end)
        / nullif(sum(case when not is_credit_note then list_amount end), 0)
    ) as average_discount,
    min(case when not is_credit_note then issue_date end) as first_invoice_date,
    max(case when not is_credit_note then issue_date end) as last_invoice_date
from invoice_totals
group by client_id, turnover_month;

-- Open on day D = entered by the end of D and not exited by then: +1 on the entry day, -1 on the exit
-- day, a running sum over the calendar.
create or replace table marts.fct_pipeline_daily as
with deal_segments as (
    select d.deal_id, d.business_line, coalesce(c.segment, 'unknown') as segment, d.amount_reporting
    from deals as d left join latest_clients as c on d.client_id = c.client_id
),
calendar as (
    select cast(unnest(generate_series(
        (select min(cast(entered_at as date)) from spells), getvariable('as_of'), interval 1 day
    )) as date) as pipeline_date
),
-- Stages removed from the catalogue stay: deals can still sit in them.
line_segment_stages as (
    select distinct ds.business_line, ds.segment, s.stage_id, s.stage_order, s.is_deleted as is_deleted_stage
    from deal_segments as ds
    inner join stages as s on ds.business_line = s.pipeline_id
    where not s.is_terminal
),
moves as (
    select ds.business_line, ds.segment, sp.stage_id, cast(sp.entered_at as date) as day,
           1 as deals, coalesce(ds.amount_reporting, 0) as amount
    from spells as sp inner join deal_segments as ds on sp.deal_id = ds.deal_id
    where not sp.is_terminal
    union all
    select ds.business_line, ds.segment, sp.stage_id, cast(sp.exited_at as date),
           -1, -coalesce(ds.amount_reporting, 0)
    from spells as sp inner join deal_segments as ds on sp.deal_id = ds.deal_id
    where not sp.is_terminal and sp.exited_at is not null
),
daily_moves as (
    select business_line, segment, stage_id, day, sum(deals) as deals, sum(amount) as amount
    from moves group by all
),
grid as (
    select cal.pipeline_date, lss.business_line, lss.segment, lss.stage_id, lss.stage_order,
           lss.is_deleted_stage, coalesce(m.deals, 0) as deals, coalesce(m.amount, 0) as amount
    from calendar as cal
    cross join line_segment_stages as lss
    left join daily_moves as m
        on m.day = cal.pipeline_date and m.business_line = lss.business_line
        and m.segment = lss.segment and m.stage_id = lss.stage_id
),
-- Moves before the calendar's first day (none: it starts at the first entry) would be lost here.
running as (
    select
        pipeline_date, business_line, segment, stage_id, stage_order, is_deleted_stage,
        sum(deals) over w as open_deal_count,
        sum(amount) over w as open_amount_reporting
    from grid
    window w as (partition by business_line, segment, stage_id order by pipeline_date rows unbounded preceding)
)
select
    pipeline_date, business_line, segment, stage_id, stage_order, is_deleted_stage, open_deal_count,
    cast(open_amount_reporting as decimal(18, 4)) as open_amount_reporting
from running;
