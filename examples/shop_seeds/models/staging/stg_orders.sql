{{ config(
    materialized='incremental',
    incremental_strategy='append',
    watermark='updated_at',
    tags=['orders']
) }}

-- Shopify orders. Incremental: each run appends only the orders changed since the last run,
-- i.e. whose updated_at is after the largest updated_at already written (the watermark).

select
    id                  as order_id,
    customer_id,
    order_number,
    lower(financial_status) as financial_status,
    upper(currency)     as currency,
    subtotal_price,
    total_tax,
    total_price,
    created_at,
    updated_at
from {{ source('raw', 'shopify_orders') }}
{% if is_incremental() %}
where updated_at > {{ watermark }}
{% endif %}
