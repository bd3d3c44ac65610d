{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer_id', on_schema_change='append_new_columns') }}

-- models/staging/stg_shopify_customers.sql in DuckDB SQL (incremental as stg_shopify_orders).

with ranked as (
    select
        *,
        row_number() over (partition by id order by updated_at desc, _received_at desc, _record_id desc) as event_rank
    from {{ source('raw', 'shopify_customers') }}
    {{ new_raw_rows() }}
),

latest as (
    select
        id                                                      as customer_id,
        nullif(trim(email), '')                                 as email,
        nullif(trim(first_name), '')                            as first_name,
        nullif(trim(last_name), '')                             as last_name,
        nullif(trim(coalesce(phone, default_address->>'$.phone')), '') as phone,
        default_address->>'$.address1'                         as address,
        default_address->>'$.city'                              as city,
        default_address->>'$.province_code'                     as state,
        default_address->>'$.zip'                               as zip,
        default_address->>'$.country_code'                      as country,
        state                                                   as account_state,
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
{{ latest_wins('l', 'customer_id', 'updated_at', this, is_incremental()) }}
