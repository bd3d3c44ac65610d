{{ config(materialized='table') }}

-- HubSpot contacts, renamed to the staging layer's column names.

select
    id                          as contact_id,
    nullif(trim(email), '')     as email,
    trim(firstname)             as first_name,
    trim(lastname)              as last_name,
    nullif(trim(phone), '')     as phone,
    lifecyclestage              as lifecycle_stage,
    createdate                  as created_at
from {{ source('raw', 'hubspot_contacts') }}
