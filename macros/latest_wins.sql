{#
  Latest event wins, across runs. `relation` holds the newest state of each key among the rows
  this run read; on an incremental run only the keys whose incoming state is newer than the
  one already staged (by `order_by`, then _received_at) are kept, so a late, older event never
  overwrites a newer one and an incremental run gives what a full refresh gives.
  Usage: select l.* from latest as l {{ latest_wins('l', 'order_id', 'updated_at', this, is_incremental()) }}
#}
{% macro latest_wins(alias, key, order_by, existing, incremental) %}
{% if incremental %}
left join {{ existing }} as staged on staged.{{ key }} = {{ alias }}.{{ key }}
where staged.{{ key }} is null
   or {{ alias }}.{{ order_by }} > staged.{{ order_by }}
   or ({{ alias }}.{{ order_by }} = staged.{{ order_by }} and {{ alias }}._received_at >= staged._received_at)
{% endif %}
{% endmacro %}
