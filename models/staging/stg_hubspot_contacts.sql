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

-- Each property's latest value, on every row of its contact: the changes are sorted once per
-- contact for all of them (a window), where an ordered aggregate per property would keep and
-- compare each contact's values one by one.
latest as (
    select
        contact_id,
        occurred_at,
        _received_at,
        {% for p, c in props %}
        first_value({{ c }}) ignore nulls over newest_first as {{ c }},
        case when {{ c }} is not null then occurred_at end as {{ c }}_set_at,
        {% endfor %}
        first_value(_record_id) over newest_first as _raw_id
    from changes
    window newest_first as (
        partition by contact_id order by occurred_at desc, _received_at desc
        rows between unbounded preceding and unbounded following
    )
),

incoming as (
    select
        contact_id,
        {% for p, c in props %}
        max({{ c }})                            as {{ c }},
        max({{ c }}_set_at)                     as {{ c }}_updated_at,
        {% endfor %}
        min(occurred_at)                        as created_at,
        max(occurred_at)                        as updated_at,
        max(_raw_id)                            as _raw_id,
        max(_received_at)                       as _received_at
    from latest
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
    now()                                       as _staged_at
from incoming as i
left join {{ this }} as s on s.contact_id = i.contact_id
{% else %}
select *, now() as _staged_at from incoming
{% endif %}
