{{ config(materialized='table', partition_by=['month(order_date)']) }}

-- Revenue per day in the reporting currency. Gross counts paid and refunded orders;
-- refunds are then taken off to give net revenue. Pending orders count only in `orders`.

select
    order_date,
    count(*)                                                                    as orders,
    count(*) filter (where financial_status = 'paid')                          as paid_orders,
    count(distinct customer_id)                                                 as customers,
    cast(coalesce(sum(total_price) filter (where financial_status in ('paid', 'refunded')), 0) as decimal(14, 2))
                                                                                as gross_revenue,
    cast(coalesce(sum(total_price) filter (where financial_status = 'refunded'), 0) as decimal(14, 2))
                                                                                as refunded_revenue,
    cast(
        coalesce(sum(total_price) filter (where financial_status in ('paid', 'refunded')), 0)
        - coalesce(sum(total_price) filter (where financial_status = 'refunded'), 0)
    as decimal(14, 2))                                                          as net_revenue,
    '{{ var("currency") }}'                                                     as currency
from (
    select
        cast(created_at as date) as order_date,
        customer_id,
        financial_status,
        total_price
    from {{ ref('stg_orders') }}
    where currency = '{{ var("currency") }}'
) o
group by order_date
