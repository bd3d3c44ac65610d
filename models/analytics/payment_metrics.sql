{{ config(materialized='table', tags=['payments']) }}

-- Stripe charges per day (by charge date, UTC): volume, refunds and the failure rate.

select
    charge_date,
    count(*)                                                                as charges,
    sum(case when status = 'succeeded' then 1 else 0 end)                   as succeeded,
    sum(case when status = 'failed' then 1 else 0 end)                      as failed,
    cast(sum(case when is_paid then amount else 0 end) as decimal(18, 2))   as volume,
    cast(sum(amount_refunded) as decimal(18, 2))                            as refunded,
    sum(case when is_refunded then 1 else 0 end)                            as refunded_charges,
    cast(sum(case when status = 'failed' then 1 else 0 end) as double) / count(*) as failure_rate
from {{ ref('stg_stripe_charges') }}
group by charge_date
