{# A model's schema is its folder's (staging, analytics, marts), as lake's namespaces are. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
{{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
