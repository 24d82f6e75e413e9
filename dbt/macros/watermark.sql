{#- The newest `column` an incremental model holds: what it has already consumed of its
    input. Input rows newer than this are what a run must (re)compute. -#}
{% macro watermark(column='built_at') -%}
    (select coalesce(max({{ column }}), '-infinity'::timestamptz) from {{ this }})
{%- endmacro %}
