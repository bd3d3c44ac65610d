{{ config(materialized='table', tags=['customers']) }}

-- One row per person: their ids in every source, the best email, phone and name (from their
-- most recently updated record that has one), lifetime value and last activity.

with records as (
    select
        i.entity_id,
        i.source,
        i.source_id,
        coalesce(sc.email, st.email, h.email)              as email,
        coalesce(sc.phone, st.phone, h.phone)              as phone,
        coalesce(sc.first_name, st.first_name, h.first_name) as first_name,
        coalesce(sc.last_name, st.last_name, h.last_name)  as last_name,
        coalesce(sc.updated_at, st.updated_at, h.updated_at) as updated_at
    from {{ ref('entity_index') }} as i
    left join {{ ref('stg_shopify_customers') }} as sc on i.source = 'shopify' and cast(sc.customer_id as varchar) = i.source_id
    left join {{ ref('stg_stripe_customers') }} as st on i.source = 'stripe' and st.customer_id = i.source_id
    left join {{ ref('stg_hubspot_contacts') }} as h on i.source = 'hubspot' and cast(h.contact_id as varchar) = i.source_id
),

people as (
    select
        entity_id,
        string_agg(case when source = 'shopify' then source_id end, ',' order by source_id) as shopify_customer_ids,
        string_agg(case when source = 'stripe' then source_id end, ',' order by source_id)  as stripe_customer_ids,
        string_agg(case when source = 'hubspot' then source_id end, ',' order by source_id) as hubspot_contact_ids,
        count(distinct source)                                                            as sources,
        lower(first_value(email ignore nulls order by updated_at desc, source_id))                          as email,
        first_value(phone ignore nulls order by updated_at desc, source_id)                                 as phone,
        -- (|| is null when either name is: the latest record with both names)
        initcap(first_value(first_name || ' ' || last_name ignore nulls order by updated_at desc, source_id)) as name,
        max(updated_at)                                                                   as last_profile_update
    from records
    group by entity_id
)

select
    p.entity_id,
    p.name,
    p.email,
    p.phone,
    p.shopify_customer_ids,
    p.stripe_customer_ids,
    p.hubspot_contact_ids,
    p.sources,
    m.orders,
    m.net_revenue                                           as lifetime_value,
    m.payment_count,
    m.first_order_at,
    greatest(m.last_order_at, m.last_payment_at, p.last_profile_update) as last_activity_at
from people as p
join {{ ref('customer_metrics') }} as m on m.entity_id = p.entity_id
