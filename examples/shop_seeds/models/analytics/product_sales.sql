{{ config(materialized='table') }}

-- Units and revenue per product (SKU), over paid orders only.

select
    l.sku,
    max(l.product_title)            as product_title,
    count(distinct l.order_id)      as orders,
    sum(l.quantity)                 as units,
    cast(sum(l.line_total) as decimal(14, 2)) as revenue
from {{ ref('stg_order_lines') }} l
join {{ ref('int_paid_orders') }} p on p.order_id = l.order_id
group by l.sku
