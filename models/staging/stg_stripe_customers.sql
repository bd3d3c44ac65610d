{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='customer_id',
    watermark='snapshot',
    on_schema_change='append_new_columns',
    tags=['stripe']
) }}

-- Stripe customers, one row per customer: the customer object of its latest event (incremental
-- as stg_shopify_orders). Stripe has one `name`: first_name is its first word, last_name the
-- rest.

with ranked as (
    select
        *,
        trim(json_get_str(data, 'object', 'name')) as full_name,
        row_number() over (
            partition by json_get_str(data, 'object', 'id')
            order by created desc, _received_at desc, _record_id desc
        ) as event_rank
    from {{ source('raw', 'stripe_customers') }}
),

latest as (
    select
        json_get_str(data, 'object', 'id')                              as customer_id,
        nullif(trim(json_get_str(data, 'object', 'email')), '')         as email,
        full_name                                                       as name,
        nullif(split_part(full_name, ' ', 1), '')                       as first_name,
        case when strpos(full_name, ' ') > 0 then trim(substr(full_name, strpos(full_name, ' ') + 1)) end as last_name,
        nullif(trim(json_get_str(data, 'object', 'phone')), '')         as phone,
        json_get_str(data, 'object', 'address', 'line1')                as address,
        json_get_str(data, 'object', 'address', 'city')                 as city,
        json_get_str(data, 'object', 'address', 'state')                as state,
        json_get_str(data, 'object', 'address', 'postal_code')          as zip,
        json_get_str(data, 'object', 'address', 'country')              as country,
        coalesce(json_get_bool(data, 'object', 'delinquent'), false)    as is_delinquent,
        to_timestamp(json_get_int(data, 'object', 'created'))           as created_at,
        to_timestamp(created)                                           as updated_at,
        _record_id                                                      as _raw_id,
        _received_at,
        now()                                                           as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'customer_id', 'updated_at', this, is_incremental()) }}
