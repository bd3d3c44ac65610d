{#
  What lake's plain source() reads on an incremental run (watermark 'snapshot': the raw rows
  ingested since the model's last run), the way dbt users write it: the raw rows loaded after
  the newest _loaded_at already staged. The staging models carry _loaded_at for this.
#}
{% macro new_raw_rows() %}
{% if is_incremental() %}
where _loaded_at > (select max(_loaded_at) from {{ this }})
{% endif %}
{% endmacro %}
