{#
  The entities whose records changed since the last run, by semantic.entity_changes (written
  by entity_index): every record's entity now and the one it was in before (which may be gone).
  A model with one row per entity recomputes these, and deletes the ones no longer there.
  Usage: changed as ({{ entities_regrouped() }} union ...)
#}
{% macro entities_regrouped() %}
select entity_id from {{ source('semantic', 'entity_changes') }}
union
select previous_entity_id from {{ source('semantic', 'entity_changes') }} where previous_entity_id is not null
{% endmacro %}
