-- Singular test: returns the failing rows, so it passes when this returns no rows.
-- No day may have negative net revenue.

select
    order_date,
    gross_revenue,
    refunded_revenue,
    net_revenue
from {{ ref('daily_revenue') }}
where net_revenue < 0
