{{ config(materialized='ephemeral') }}

-- Paid orders only. Ephemeral: never written, inlined into the models that ref() it.

select
    order_id,
    customer_id,
    order_number,
    currency,
    total_price,
    created_at
from {{ ref('stg_orders') }}
where financial_status = 'paid'
