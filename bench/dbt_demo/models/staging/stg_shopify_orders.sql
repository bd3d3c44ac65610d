{{ config(materialized='incremental', incremental_strategy='merge', unique_key='order_id', on_schema_change='append_new_columns') }}

-- models/staging/stg_shopify_orders.sql in DuckDB SQL: one row per order, the state of its
-- latest event. Incremental: only the raw rows loaded since the last run (new_raw_rows), and
-- latest_wins keeps an order only when its new state is newer than the staged one.

with ranked as (
    select
        *,
        row_number() over (partition by id order by updated_at desc, _received_at desc, _record_id desc) as event_rank
    from {{ source('raw', 'shopify_orders') }}
    {{ new_raw_rows() }}
),

latest as (
    select
        id                                                      as order_id,
        order_number,
        cast(customer->'$.id' as bigint)                        as customer_id,
        nullif(lower(trim(coalesce(email, customer->>'$.email'))), '') as email,
        cast(total_price as decimal(18, 2))                     as total_amount,
        cast(subtotal_price as decimal(18, 2))                  as subtotal_amount,
        cast(total_tax as decimal(18, 2))                       as tax_amount,
        cast(total_discounts as decimal(18, 2))                 as discount_amount,
        cast(total_shipping_price_set->>'$.shop_money.amount' as decimal(18, 2)) as shipping_amount,
        upper(currency)                                         as currency,
        cast(json_array_length(line_items) as int)              as line_item_count,
        lower(financial_status)                                 as financial_status,
        coalesce(lower(fulfillment_status), 'unfulfilled')      as fulfillment_status,
        lower(financial_status) in ('paid', 'partially_refunded', 'refunded') as is_paid,
        lower(coalesce(fulfillment_status, '')) = 'fulfilled'   as is_fulfilled,
        shipping_address->>'$.city'                             as shipping_city,
        shipping_address->>'$.province_code'                    as shipping_state,
        shipping_address->>'$.country_code'                     as shipping_country,
        billing_address->>'$.city'                              as billing_city,
        billing_address->>'$.province_code'                     as billing_state,
        billing_address->>'$.country_code'                      as billing_country,
        cast(created_at as date)                                as order_date,
        created_at,
        updated_at,
        _record_id                                              as _raw_id,
        _received_at,
        _loaded_at,
        now()                                                   as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'order_id', 'updated_at', this, is_incremental()) }}
