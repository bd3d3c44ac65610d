{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='contact_id',
    watermark='snapshot',
    on_schema_change='append_new_columns',
    tags=['hubspot']
) }}

-- HubSpot contacts, one row per contact with its properties flattened. A contact.creation
-- event carries every property, a contact.propertyChange event one. Each property takes the
-- value of the latest event that set it (by occurredAt), and <property>_updated_at says when:
-- an incremental run (only the raw rows ingested since the last run) keeps, per property, the
-- newer of the staged and the incoming value, so late events fold in as a full refresh would.

{% set props = [('email', 'email'), ('firstname', 'first_name'), ('lastname', 'last_name'), ('phone', 'phone'),
                ('city', 'city'), ('state', 'state'), ('zip', 'zip'), ('lifecyclestage', 'lifecycle_stage')] %}

with changes as (
    select
        "objectId"                              as contact_id,
        to_timestamp_millis("occurredAt")       as occurred_at,
        _received_at,
        _record_id,
        {% for p, c in props %}
        nullif(trim(case
            when "subscriptionType" = 'contact.creation' then json_get_str(properties, '{{ p }}', 'value')
            when "propertyName" = '{{ p }}' then "propertyValue"
        end), '') as {{ c }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ source('raw', 'hubspot_contacts') }}
),

-- Each property's value from the latest event that set it: the changes unpivoted to one row per
-- property set, the newest kept per contact and property (a `row_number() = 1` dedup: one hash
-- pass, no sort), then pivoted back. A window or an ordered aggregate per property would work
-- contact by contact, and there are hundreds of thousands.
property_sets as (
    select contact_id, occurred_at, _received_at, unnest(make_array(
        {% for p, c in props %}
        named_struct('property', '{{ c }}', 'value', {{ c }}){{ "," if not loop.last }}
        {% endfor %}
    )) as p
    from changes
),

latest_sets as (
    select contact_id, property, value, occurred_at
    from (
        select
            contact_id,
            p['property'] as property,
            p['value']    as value,
            occurred_at,
            row_number() over (partition by contact_id, p['property'] order by occurred_at desc, _received_at desc) as rank
        from property_sets
        where p['value'] is not null
    )
    where rank = 1
),

properties as (
    select
        contact_id,
        {% for p, c in props %}
        max(case when property = '{{ c }}' then value end)       as {{ c }},
        max(case when property = '{{ c }}' then occurred_at end) as {{ c }}_updated_at{{ "," if not loop.last }}
        {% endfor %}
    from latest_sets
    group by contact_id
),

-- The raw row of each contact's newest event.
newest as (
    select contact_id, _record_id as _raw_id
    from (
        select contact_id, _record_id, row_number() over (partition by contact_id order by occurred_at desc, _received_at desc) as rank
        from changes
    )
    where rank = 1
),

spans as (
    select contact_id, min(occurred_at) as created_at, max(occurred_at) as updated_at, max(_received_at) as _received_at
    from changes
    group by contact_id
),

incoming as (
    select
        c.contact_id,
        {% for p, c in props %}
        p.{{ c }},
        p.{{ c }}_updated_at,
        {% endfor %}
        c.created_at,
        c.updated_at,
        n._raw_id,
        c._received_at
    from spans as c
    join newest as n on n.contact_id is not distinct from c.contact_id
    left join properties as p on p.contact_id is not distinct from c.contact_id
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
    now()                                       as _staged_at
from incoming as i
left join {{ this }} as s on s.contact_id = i.contact_id
{% else %}
select *, now() as _staged_at from incoming
{% endif %}
