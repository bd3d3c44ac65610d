{{ config(materialized='table') }}

-- One row per raw Shopify customer, with the email normalized so records can be matched.

select
    id                                  as customer_id,
    nullif(lower(trim(email)), '')      as email,
    trim(first_name)                    as first_name,
    trim(last_name)                     as last_name,
    nullif(trim(phone), '')             as phone,
    upper(trim(country))                as country,
    created_at,
    updated_at
from {{ source('raw', 'shopify_customers') }}
