{#- The relation a generic data test reads: its rows the latest build wrote (new_rows_only),
    and for a key test every row sharing a key with those, old ones too (new_keys_only); then
    the test's own `where` config, as dbt's default does. Whole with var full_tests. -#}
{% macro get_where_subquery(relation) -%}
    {%- set test = model.test_metadata if model is mapping and model.test_metadata else {} -%}
    {%- set kwargs = test.get('kwargs', {}) -%}
    {%- if test.get('name') == 'unique' -%}
        {%- set filters = [new_keys_only(relation, [kwargs['column_name']])] -%}
    {%- elif test.get('name') == 'unique_combination' -%}
        {%- set filters = [new_keys_only(relation, kwargs['columns'])] -%}
    {%- else -%}
        {%- set filters = [new_rows_only(relation)] -%}
    {%- endif -%}
    {%- do filters.append(config.get('where')) -%}
    {%- set filters = filters | select | list -%}
    {%- if filters -%}
        {{ return('(select * from ' ~ relation ~ ' where (' ~ filters | join(') and (') ~ ')) dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
