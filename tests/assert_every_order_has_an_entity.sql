-- Every staged order of a known Shopify customer counts towards exactly one person: those
-- orders add up to the orders of customer_metrics (an order counted twice, or lost between
-- entity_index and the metrics, fails). Orders whose customer event has not arrived yet are
-- not attributed (see the relationships test on stg_shopify_orders.customer_id).
select known.n as known_orders, attributed.n as attributed_orders
from (
    select count(*) as n
    from {{ ref('stg_shopify_orders') }} as o
    join {{ ref('stg_shopify_customers') }} as c on c.customer_id = o.customer_id
) as known
cross join (select sum(orders) as n from {{ ref('customer_metrics') }}) as attributed
where known.n <> attributed.n
