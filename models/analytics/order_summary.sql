{{ config(materialized='table', tags=['orders']) }}

-- Orders per day (by order date, UTC): counts, revenue, refunds, items and fulfilment.

select
    order_date,
    count(*)                                                                as orders,
    count(distinct customer_id)                                             as customers,
    cast(sum(case when is_paid then total_amount else 0 end) as decimal(18, 2)) as gross_revenue,
    cast(sum(case when financial_status = 'refunded' then total_amount else 0 end) as decimal(18, 2)) as refunds,
    cast(sum(case when is_paid and financial_status <> 'refunded' then total_amount else 0 end) as decimal(18, 2)) as net_revenue,
    cast(avg(total_amount) as decimal(18, 2))                               as avg_order_value,
    sum(line_item_count)                                                    as line_items,
    sum(case when financial_status = 'refunded' then 1 else 0 end)          as refunded_orders,
    sum(case when is_fulfilled then 1 else 0 end)                           as fulfilled_orders
from {{ ref('stg_shopify_orders') }}
where currency = '{{ var("currency") }}'
group by order_date
