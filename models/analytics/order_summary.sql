{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='order_date',
    watermark='snapshot',
    tags=['orders']
) }}

-- Orders per day (by order date, UTC): counts, revenue, refunds, items and fulfilment.
-- Incremental: the plain ref() reads only the orders staged since the last run; the days they
-- fall on are recomputed over all of their orders (whole=true) and merged.

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
from {{ ref('stg_shopify_orders', whole=true) }}
where currency = '{{ var("currency") }}'
{% if is_incremental() %}
  and order_date in (select order_date from {{ ref('stg_shopify_orders') }})
{% endif %}
group by order_date
