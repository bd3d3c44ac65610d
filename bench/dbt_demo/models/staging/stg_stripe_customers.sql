{{ config(materialized='incremental', incremental_strategy='merge', unique_key='customer_id', on_schema_change='append_new_columns') }}

-- models/staging/stg_stripe_customers.sql in DuckDB SQL (incremental as stg_shopify_orders).

with ranked as (
    select
        *,
        trim(data->>'$.object.name') as full_name,
        row_number() over (
            partition by data->>'$.object.id'
            order by created desc, _received_at desc, _record_id desc
        ) as event_rank
    from {{ source('raw', 'stripe_customers') }}
    {{ new_raw_rows() }}
),

latest as (
    select
        data->>'$.object.id'                                            as customer_id,
        nullif(trim(data->>'$.object.email'), '')                       as email,
        full_name                                                       as name,
        nullif(split_part(full_name, ' ', 1), '')                       as first_name,
        case when strpos(full_name, ' ') > 0 then trim(substr(full_name, strpos(full_name, ' ') + 1)) end as last_name,
        nullif(trim(data->>'$.object.phone'), '')                       as phone,
        data->>'$.object.address.line1'                                as address,
        data->>'$.object.address.city'                                 as city,
        data->>'$.object.address.state'                                as state,
        data->>'$.object.address.postal_code'                          as zip,
        data->>'$.object.address.country'                              as country,
        coalesce(cast(data->'$.object.delinquent' as boolean), false)   as is_delinquent,
        to_timestamp(cast(data->'$.object.created' as bigint))          as created_at,
        to_timestamp(created)                                           as updated_at,
        _record_id                                                      as _raw_id,
        _received_at,
        _loaded_at,
        now()                                                           as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'customer_id', 'updated_at', this, is_incremental()) }}
