{#- dbt-postgres' create_schema, safe when dbt invocations run side by side: Cosmos runs each
    model as its own task, so on a fresh warehouse two tasks can both find a schema missing
    and both create it. `create schema if not exists` is not atomic: the second waits on the
    first's catalog row and then fails on pg_namespace's unique index ("duplicate key value
    violates unique constraint pg_namespace_nspname_index"). Here that error means the schema
    now exists, which is all the caller asked for. -#}
{% macro postgres__create_schema(relation) -%}
  {% if relation.database -%}
    {{ adapter.verify_database(relation.database) }}
  {%- endif -%}
  {%- call statement('create_schema') -%}
    do $$ begin
        create schema if not exists {{ relation.without_identifier().include(database=False) }};
    exception when unique_violation or duplicate_schema then
        null;
    end $$
  {%- endcall -%}
{% endmacro %}
