{{ config(materialized='incremental', incremental_strategy='merge', unique_key='day') }}

-- models/marts/sales_dashboard_daily.sql in DuckDB SQL: one row per day, orders beside Stripe
-- charges. Incremental: the days either daily model merged since this model's last build.

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
    p.failure_rate                                      as payment_failure_rate,
    now()                                               as _built_at
from {{ ref('order_summary') }} as o
full outer join {{ ref('payment_metrics') }} as p on p.charge_date = o.order_date
{% if is_incremental() %}
where coalesce(o.order_date, p.charge_date) in (
    select order_date from {{ ref('order_summary') }} where _built_at > (select max(_built_at) from {{ this }})
    union
    select charge_date from {{ ref('payment_metrics') }} where _built_at > (select max(_built_at) from {{ this }})
)
{% endif %}
