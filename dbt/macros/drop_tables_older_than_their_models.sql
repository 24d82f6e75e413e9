{#- A table an incremental model built before its current definition (before it was
    incremental, or before it kept the columns its incremental logic reads back, such as
    built_at) lacks a column the model's YAML declares: an incremental run on it would read a
    column it cannot have and fail. Run at the start of `dbt build` / `dbt run` (on-run-start),
    this drops such tables (through the adapter, so dbt's relation cache forgets them too),
    and the run builds them in full: an existing warehouse upgrades without a manual
    --full-refresh. It reads the columns of the incremental models' tables only; a current
    warehouse drops nothing (tests/test_analytics_incremental.py checks both). -#}
{% macro drop_tables_older_than_their_models() -%}
{%- if execute and flags.WHICH in ('build', 'run') -%}
    {%- set dropped = [] -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.config.materialized == 'incremental' -%}
        {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- if relation is not none -%}
            {%- set held = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
            {%- set missing = node.columns.keys() | reject('in', held) | list -%}
            {%- if missing -%}
                {%- do log('dropping ' ~ relation ~ ': built before its model had ' ~ missing | join(', ') ~ '; this run builds it in full', info=true) -%}
                {%- do adapter.drop_relation(relation) -%}
                {%- do dropped.append(relation) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if dropped -%}{%- do adapter.commit() -%}{%- endif -%}
{%- endif -%}
{%- endmacro %}
