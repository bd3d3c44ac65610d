{{ config(materialized='table') }}

-- One row per customer with their order history; customers who never ordered get zeros.

select
    c.customer_id,
    c.email,
    c.first_name,
    c.last_name,
    c.country,
    o.first_order_at,
    o.last_order_at,
    coalesce(o.order_count, 0)                                  as order_count,
    coalesce(p.paid_order_count, 0)                             as paid_order_count,
    cast(coalesce(p.lifetime_value, 0) as decimal(14, 2))       as lifetime_value
from {{ ref('stg_customers') }} c
left join (
    select
        customer_id,
        min(created_at)     as first_order_at,
        max(created_at)     as last_order_at,
        count(*)            as order_count
    from {{ ref('stg_orders') }}
    group by customer_id
) o on o.customer_id = c.customer_id
left join (
    select
        customer_id,
        count(*)            as paid_order_count,
        sum(total_price)    as lifetime_value
    from {{ ref('int_paid_orders') }}
    group by customer_id
) p on p.customer_id = c.customer_id
