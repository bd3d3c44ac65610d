{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='charge_id',
    watermark='snapshot',
    on_schema_change='append_new_columns',
    tags=['stripe']
) }}

-- Stripe charges, one row per charge: the charge object of its latest event, by the event's
-- `created` (a charge.refunded wins over the charge.succeeded before it; incremental as
-- stg_shopify_orders). Amounts are converted from cents.

with ranked as (
    select
        *,
        row_number() over (
            partition by json_get_str(data, 'object', 'id')
            order by created desc, _received_at desc, _record_id desc
        ) as event_rank
    from {{ source('raw', 'stripe_charges') }}
),

latest as (
    select
        json_get_str(data, 'object', 'id')                                  as charge_id,
        json_get_str(data, 'object', 'customer')                            as customer_id,
        cast(json_get_str(data, 'object', 'metadata', 'shopify_order_id') as bigint) as order_id,
        cast(cast(json_get_int(data, 'object', 'amount') as decimal(18, 2)) / 100 as decimal(18, 2))          as amount,
        cast(cast(json_get_int(data, 'object', 'amount_refunded') as decimal(18, 2)) / 100 as decimal(18, 2)) as amount_refunded,
        upper(json_get_str(data, 'object', 'currency'))                     as currency,
        json_get_str(data, 'object', 'status')                              as status,
        coalesce(json_get_bool(data, 'object', 'paid'), false)              as is_paid,
        coalesce(json_get_bool(data, 'object', 'refunded'), false)          as is_refunded,
        json_get_str(data, 'object', 'failure_code')                        as failure_code,
        nullif(lower(trim(json_get_str(data, 'object', 'billing_details', 'email'))), '') as billing_email,
        to_timestamp(json_get_int(data, 'object', 'created'))               as charged_at,
        cast(to_timestamp(json_get_int(data, 'object', 'created')) as date) as charge_date,
        type                                                                as last_event_type,
        to_timestamp(created)                                               as updated_at,
        _record_id                                                          as _raw_id,
        _received_at,
        now()                                                               as _staged_at
    from ranked
    where event_rank = 1
)

select l.* from latest as l
{{ latest_wins('l', 'charge_id', 'updated_at', this, is_incremental()) }}
