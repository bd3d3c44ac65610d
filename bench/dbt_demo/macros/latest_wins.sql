{#
  macros/latest_wins.sql of the lake project, unchanged: on an incremental run keep only the
  keys whose incoming state is newer than the one already staged (by `order_by`, then
  _received_at), so a late, older event never overwrites a newer one.
#}
{% macro latest_wins(alias, key, order_by, existing, incremental) %}
{% if incremental %}
left join {{ existing }} as staged on staged.{{ key }} = {{ alias }}.{{ key }}
where staged.{{ key }} is null
   or {{ alias }}.{{ order_by }} > staged.{{ order_by }}
   or ({{ alias }}.{{ order_by }} = staged.{{ order_by }} and {{ alias }}._received_at >= staged._received_at)
{% endif %}
{% endmacro %}
