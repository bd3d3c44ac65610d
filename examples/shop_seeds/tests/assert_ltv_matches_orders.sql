-- Singular test: returns the failing rows, so it passes when this returns no rows.
-- A customer's lifetime value in the mart must equal the sum of their paid orders (to the cent).

select
    m.customer_id,
    m.lifetime_value,
    coalesce(o.paid_total, 0) as paid_total
from {{ ref('mart_customer_ltv') }} m
left join (
    select
        customer_id,
        sum(total_price) as paid_total
    from {{ ref('stg_orders') }}
    where financial_status = 'paid'
    group by customer_id
) o on o.customer_id = m.customer_id
where abs(m.lifetime_value - coalesce(o.paid_total, 0)) > 0.01
