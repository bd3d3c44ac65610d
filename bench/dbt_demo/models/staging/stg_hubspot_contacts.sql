{{ config(materialized='incremental', incremental_strategy='merge', unique_key='contact_id', on_schema_change='append_new_columns') }}

-- models/staging/stg_hubspot_contacts.sql in DuckDB SQL: one row per contact, each property
-- from the latest event that set it; an incremental run (the raw rows loaded since the last
-- run) keeps, per property, the newer of the staged and the incoming value.

{% set props = [('email', 'email'), ('firstname', 'first_name'), ('lastname', 'last_name'), ('phone', 'phone'),
                ('city', 'city'), ('state', 'state'), ('zip', 'zip'), ('lifecyclestage', 'lifecycle_stage')] %}

with changes as (
    select
        "objectId"                              as contact_id,
        epoch_ms("occurredAt")                  as occurred_at,
        _received_at,
        _loaded_at,
        _record_id,
        {% for p, c in props %}
        nullif(trim(case
            when "subscriptionType" = 'contact.creation' then properties->>'$.{{ p }}.value'
            when "propertyName" = '{{ p }}' then "propertyValue"
        end), '') as {{ c }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ source('raw', 'hubspot_contacts') }}
    {{ new_raw_rows() }}
),

incoming as (
    select
        contact_id,
        {% for p, c in props %}
        first({{ c }} order by occurred_at desc, _received_at desc) filter (where {{ c }} is not null) as {{ c }},
        max(occurred_at) filter (where {{ c }} is not null) as {{ c }}_updated_at,
        {% endfor %}
        min(occurred_at)                        as created_at,
        max(occurred_at)                        as updated_at,
        first(_record_id order by occurred_at desc, _received_at desc) as _raw_id,
        max(_received_at)                       as _received_at,
        max(_loaded_at)                         as _loaded_at
    from changes
    group by contact_id
)

{% if is_incremental() %}
select
    i.contact_id,
    {% for p, c in props %}
    case when i.{{ c }}_updated_at >= s.{{ c }}_updated_at or s.{{ c }}_updated_at is null
         then coalesce(i.{{ c }}, s.{{ c }}) else s.{{ c }} end as {{ c }},
    greatest(i.{{ c }}_updated_at, s.{{ c }}_updated_at) as {{ c }}_updated_at,
    {% endfor %}
    least(i.created_at, s.created_at)           as created_at,
    greatest(i.updated_at, s.updated_at)        as updated_at,
    case when s.updated_at is null or i.updated_at >= s.updated_at then i._raw_id else s._raw_id end as _raw_id,
    greatest(i._received_at, s._received_at)    as _received_at,
    greatest(i._loaded_at, s._loaded_at)        as _loaded_at,
    now()                                       as _staged_at
from incoming as i
left join {{ this }} as s on s.contact_id = i.contact_id
{% else %}
select *, now() as _staged_at from incoming
{% endif %}
