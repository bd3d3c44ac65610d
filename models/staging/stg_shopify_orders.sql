{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='order_id',
    watermark='snapshot',
    on_schema_change='append_new_columns',
    tags=['shopify']
) }}

-- Shopify orders, one row per order: the state of its latest event (orders/create, then
-- orders/updated), by updated_at. Incremental: a run reads only the raw rows ingested since the
-- last run (watermark 'snapshot': the data files appended since), and latest_wins keeps an
-- order only when its new state is newer than the staged one, so a late event never
-- overwrites a newer state and the table equals a full refresh.

with ranked as (
    select
        *,
        row_number() over (partition by id order by updated_at desc, _received_at desc, _record_id desc) as event_rank
    from {{ source('raw', 'shopify_orders') }}
),

latest as (
    select
        id                                                      as order_id,
        order_number,
        json_get_int(customer, 'id')                            as customer_id,
        nullif(lower(trim(coalesce(email, json_get_str(customer, 'email')))), '') as email,
        cast(total_price as decimal(18, 2))                     as total_amount,
        cast(subtotal_price as decimal(18, 2))                  as subtotal_amount,
        cast(total_tax as decimal(18, 2))                       as tax_amount,
        cast(total_discounts as decimal(18, 2))                 as discount_amount,
        cast(json_get_str(total_shipping_price_set, 'shop_money', 'amount') as decimal(18, 2)) as shipping_amount,
        upper(currency)                                         as currency,
        cast(json_length(line_items) as int)                    as line_item_count,
        lower(financial_status)                                 as financial_status,
        coalesce(lower(fulfillment_status), 'unfulfilled')      as fulfillment_status,
        lower(financial_status) in ('paid', 'partially_refunded', 'refunded') as is_paid,
        lower(coalesce(fulfillment_status, '')) = 'fulfilled'   as is_fulfilled,
        json_get_str(shipping_address, 'city')                  as shipping_city,
        json_get_str(shipping_address, 'province_code')         as shipping_state,
        json_get_str(shipping_address, 'country_code')          as shipping_country,
        json_get_str(billing_address, 'city')                   as billing_city,
        json_get_str(billing_address, 'province_code')          as billing_state,
        json_get_str(billing_address, 'country_code')           as billing_country,
        cast(created_at as date)                                as order_date,
        created_at,
        updated_at,
        _record_id                                              as _raw_id,
        _received_at,
        now()                                                   as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'order_id', 'updated_at', this, is_incremental()) }}
