{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_date') }}

-- models/analytics/order_summary.sql in DuckDB SQL: orders per day. Incremental: the days of
-- the orders staged since this model's last build (_staged_at after its newest _built_at:
-- what lake's plain ref() reads) are recomputed over all of their orders and merged.

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
    sum(case when is_fulfilled then 1 else 0 end)                           as fulfilled_orders,
    now()                                                                   as _built_at
from {{ ref('stg_shopify_orders') }}
where currency = '{{ var("currency") }}'
{% if is_incremental() %}
  and order_date in (
    select order_date from {{ ref('stg_shopify_orders') }}
    where _staged_at > (select max(_built_at) from {{ this }})
  )
{% endif %}
group by order_date
