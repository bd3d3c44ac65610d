{{ config(materialized='table', tags=['marts', 'finance']) }}

-- Customers who have ordered, with their lifetime value tier and rank.

select
    customer_id,
    email,
    first_name,
    last_name,
    country,
    first_order_at,
    last_order_at,
    order_count,
    paid_order_count,
    lifetime_value,
    case
        when lifetime_value >= 1000 then 'gold'
        when lifetime_value >= 300 then 'silver'
        else 'bronze'
    end                                                                 as ltv_tier,
    -- row_number() is unsigned in DataFusion; Iceberg has no unsigned types, so cast.
    cast(row_number() over (order by lifetime_value desc, customer_id) as bigint) as ltv_rank
from {{ ref('customer_orders') }}
where order_count > 0
