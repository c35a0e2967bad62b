{#-
    The history of each deal's amount: one row per change, from the CRM's versions of the deal. The
    forecast backtest values a deal at a past origin by the amount the CRM showed then (the latest row
    with known_from before the origin; the deal's first row when the history starts later), so a deal
    later won, lost or re-priced does not lend the backtest its future amount.

    known_from is the version's updated_at (the CRM's time of the change), else its extract date.
    Converted to the reporting currency by the rule stg_crm__deals uses (macro deals_with_fx_rate: the
    rate of the day the deal was created). Versions that leave the amount as it was are collapsed.

    Incremental by the partition window: a run deletes the rows of the deals in int_deals_touched (which
    includes deals whose currency's rates changed) and re-inserts all their versions.
-#}
-- depends_on: {{ ref('int_deals_touched') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook=["{{ delete_touched_keys('deal_id', touched_deal_ids()) }}"]
    )
}}

with

source as (

    select * from {{ source('crm', 'deals') }}
    {% if is_incremental() %}
    where deal_id in ({{ touched_deal_ids() }})
    {% endif %}

),

fx_rates as (

    select * from {{ ref('stg_invoicing__fx_rates') }}

),

-- One version per deal and instant: of two rows with the same time, the one that wins in
-- stg_crm__deals' order (later extract, later row).
versions as (

    select
        deal_id,
        amount,
        currency,
        created_at,
        coalesce(updated_at, cast(_extract_date as timestamp)) as known_from
    from source
    where not coalesce(is_deleted, false)
    qualify row_number() over (
        partition by deal_id, coalesce(updated_at, cast(_extract_date as timestamp))
        order by _extract_date desc, _source_row desc
    ) = 1

),

versions_with_rates as (

    {{ deals_with_fx_rate('versions', 'fx_rates') }}

),

converted as (

    select
        deal_id,
        known_from,
        cast(amount * fx_rate_to_reporting as decimal(18, 4)) as amount_reporting
    from versions_with_rates

),

changes as (

    select
        *,
        lag(amount_reporting) over by_deal as previous_amount_reporting,
        row_number() over by_deal as version_number
    from converted
    window by_deal as (partition by deal_id order by known_from)

)

select
    cast(deal_id as varchar) as deal_id,
    cast(known_from as timestamp) as known_from,
    amount_reporting
from changes
where
    version_number = 1
    or amount_reporting is distinct from previous_amount_reporting
