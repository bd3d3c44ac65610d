{{ config(materialized='table') }}

-- Order line items, with the line total (quantity x unit price).

select
    id                                          as order_line_id,
    order_id,
    sku,
    trim(product_title)                         as product_title,
    quantity,
    price,
    cast(quantity * price as decimal(12, 2))    as line_total
from {{ source('raw', 'shopify_order_lines') }}
