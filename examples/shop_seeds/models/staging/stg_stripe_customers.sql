{{ config(materialized='table') }}

-- Stripe customers with the single `name` field split into first and last name.

select
    id                                                  as customer_id,
    nullif(trim(email), '')                             as email,
    split_part(trim(name), ' ', 1)                      as first_name,
    nullif(trim(substr(trim(name), length(split_part(trim(name), ' ', 1)) + 1)), '') as last_name,
    nullif(trim(phone), '')                             as phone,
    upper(trim(address_country))                        as country,
    created                                             as created_at
from {{ source('raw', 'stripe_customers') }}
