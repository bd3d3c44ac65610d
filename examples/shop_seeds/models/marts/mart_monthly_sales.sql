{{ config(materialized='table', tags=['finance']) }}

-- Monthly sales, rolled up from daily revenue.

select
    cast(date_trunc('month', cast(order_date as timestamp)) as date)   as month,
    currency,
    count(*)                                    as days_with_orders,
    sum(orders)                                 as orders,
    sum(paid_orders)                            as paid_orders,
    cast(sum(gross_revenue) as decimal(14, 2))      as gross_revenue,
    cast(sum(refunded_revenue) as decimal(14, 2))   as refunded_revenue,
    cast(sum(net_revenue) as decimal(14, 2))        as net_revenue
from {{ ref('daily_revenue') }}
group by 1, 2
