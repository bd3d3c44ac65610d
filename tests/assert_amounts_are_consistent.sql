-- Money that cannot be: negative order totals, refunds above the charge, net above gross.
select 'order' as kind, cast(order_id as varchar) as id from {{ ref('stg_shopify_orders') }} where total_amount < 0
union all
select 'charge', charge_id from {{ ref('stg_stripe_charges') }} where amount < 0 or amount_refunded > amount
union all
select 'customer', entity_id from {{ ref('customer_metrics') }} where net_revenue < 0 or net_revenue > gross_revenue
union all
select 'day', cast(charge_date as varchar) from {{ ref('payment_metrics') }} where failure_rate < 0 or failure_rate > 1
