{{ config(materialized='table', tags=['finance']) }}

-- One row per day: Shopify orders and revenue beside Stripe volume, refunds and failures.

select
    coalesce(o.order_date, p.charge_date)               as day,
    coalesce(o.orders, 0)                               as orders,
    coalesce(o.customers, 0)                            as customers,
    coalesce(o.gross_revenue, 0)                        as gross_revenue,
    coalesce(o.net_revenue, 0)                          as net_revenue,
    o.avg_order_value,
    coalesce(o.refunded_orders, 0)                      as refunded_orders,
    coalesce(p.charges, 0)                              as charges,
    coalesce(p.volume, 0)                               as payment_volume,
    coalesce(p.refunded, 0)                             as payment_refunds,
    p.failure_rate                                      as payment_failure_rate
from {{ ref('order_summary') }} as o
full outer join {{ ref('payment_metrics') }} as p on p.charge_date = o.order_date
