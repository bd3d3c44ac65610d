{{ config(materialized='incremental', incremental_strategy='merge', unique_key='charge_id', on_schema_change='append_new_columns') }}

-- models/staging/stg_stripe_charges.sql in DuckDB SQL (incremental as stg_shopify_orders).

with ranked as (
    select
        *,
        data->>'$.object.id' as charge_key,
        row_number() over (
            partition by data->>'$.object.id'
            order by created desc, _received_at desc, _record_id desc
        ) as event_rank
    from {{ source('raw', 'stripe_charges') }}
    {{ new_raw_rows() }}
),

latest as (
    select
        charge_key                                                          as charge_id,
        data->>'$.object.customer'                                          as customer_id,
        cast(data->>'$.object.metadata.shopify_order_id' as bigint)         as order_id,
        cast(cast(cast(data->'$.object.amount' as bigint) as decimal(18, 2)) / 100 as decimal(18, 2))          as amount,
        cast(cast(cast(data->'$.object.amount_refunded' as bigint) as decimal(18, 2)) / 100 as decimal(18, 2)) as amount_refunded,
        upper(data->>'$.object.currency')                                   as currency,
        data->>'$.object.status'                                            as status,
        coalesce(cast(data->'$.object.paid' as boolean), false)             as is_paid,
        coalesce(cast(data->'$.object.refunded' as boolean), false)         as is_refunded,
        data->>'$.object.failure_code'                                      as failure_code,
        nullif(lower(trim(data->>'$.object.billing_details.email')), '')    as billing_email,
        to_timestamp(cast(data->'$.object.created' as bigint))              as charged_at,
        cast(to_timestamp(cast(data->'$.object.created' as bigint)) as date) as charge_date,
        type                                                                as last_event_type,
        to_timestamp(created)                                               as updated_at,
        _record_id                                                          as _raw_id,
        _received_at,
        _loaded_at,
        now()                                                               as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'charge_id', 'updated_at', this, is_incremental()) }}
