{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='entity_id',
    watermark='snapshot',
    delete_when='_deleted',
    tags=['customers']
) }}

-- Per entity (person across Shopify, Stripe and HubSpot): orders, revenue, refunds and
-- payments. Shopify orders join through the Shopify customer records of the entity, Stripe
-- charges through its Stripe customer records.
-- Incremental: the plain ref()/source() read only what changed since the last run. The
-- entities touched (records that joined or left them, new or changed orders and charges) are
-- recomputed over every row (whole=true) and merged; an entity that no longer exists is
-- deleted (_deleted, see delete_when).

with ids as (
    select entity_id, source, source_id from {{ ref('entity_index', whole=true) }}
),

{% if is_incremental() %}
changed as (
    {{ entities_regrouped() }}
    union
    select ids.entity_id from {{ ref('stg_shopify_orders') }} as o
    join ids on ids.source = 'shopify' and ids.source_id = cast(o.customer_id as varchar)
    union
    select ids.entity_id from {{ ref('stg_stripe_charges') }} as c
    join ids on ids.source = 'stripe' and ids.source_id = c.customer_id
),

entities as (
    select c.entity_id, i.entity_id is null as _deleted
    from (select distinct entity_id from changed) as c
    left join (select distinct entity_id from ids) as i on i.entity_id = c.entity_id
),
{% else %}
entities as (
    select distinct entity_id, false as _deleted from ids
),
{% endif %}

orders as (
    select
        ids.entity_id,
        count(*)                                                            as orders,
        sum(case when o.is_paid then o.total_amount else 0 end)             as gross_revenue,
        sum(case when o.financial_status = 'refunded' then o.total_amount else 0 end) as refunds,
        min(o.created_at)                                                   as first_order_at,
        max(o.created_at)                                                   as last_order_at
    from {{ ref('stg_shopify_orders', whole=true) }} as o
    join ids on ids.source = 'shopify' and ids.source_id = cast(o.customer_id as varchar)
    where ids.entity_id in (select entity_id from entities)
    group by ids.entity_id
),

payments as (
    select
        ids.entity_id,
        count(*)                                                            as payment_count,
        sum(case when c.status = 'failed' then 1 else 0 end)                as failed_payments,
        sum(case when c.is_paid then c.amount else 0 end)                   as payment_volume,
        max(c.charged_at)                                                   as last_payment_at
    from {{ ref('stg_stripe_charges', whole=true) }} as c
    join ids on ids.source = 'stripe' and ids.source_id = c.customer_id
    where ids.entity_id in (select entity_id from entities)
    group by ids.entity_id
)

select
    e.entity_id,
    coalesce(o.orders, 0)                                                   as orders,
    cast(coalesce(o.gross_revenue, 0) as decimal(18, 2))                    as gross_revenue,
    cast(coalesce(o.refunds, 0) as decimal(18, 2))                          as refunds,
    cast(coalesce(o.gross_revenue, 0) - coalesce(o.refunds, 0) as decimal(18, 2)) as net_revenue,
    o.first_order_at,
    o.last_order_at,
    coalesce(p.payment_count, 0)                                            as payment_count,
    coalesce(p.failed_payments, 0)                                          as failed_payments,
    cast(coalesce(p.payment_volume, 0) as decimal(18, 2))                   as payment_volume,
    p.last_payment_at,
    e._deleted
from entities as e
left join orders as o on o.entity_id = e.entity_id
left join payments as p on p.entity_id = e.entity_id
