{{ config(materialized='incremental', incremental_strategy='merge', unique_key='charge_date') }}

-- models/analytics/payment_metrics.sql in DuckDB SQL: Stripe charges per day. Incremental: the
-- days of the charges staged since this model's last build are recomputed and merged.

select
    charge_date,
    count(*)                                                                as charges,
    sum(case when status = 'succeeded' then 1 else 0 end)                   as succeeded,
    sum(case when status = 'failed' then 1 else 0 end)                      as failed,
    cast(sum(case when is_paid then amount else 0 end) as decimal(18, 2))   as volume,
    cast(sum(amount_refunded) as decimal(18, 2))                            as refunded,
    sum(case when is_refunded then 1 else 0 end)                            as refunded_charges,
    cast(sum(case when status = 'failed' then 1 else 0 end) as double) / count(*) as failure_rate,
    now()                                                                   as _built_at
from {{ ref('stg_stripe_charges') }}
{% if is_incremental() %}
where charge_date in (
    select charge_date from {{ ref('stg_stripe_charges') }}
    where _staged_at > (select max(_built_at) from {{ this }})
)
{% endif %}
group by charge_date
