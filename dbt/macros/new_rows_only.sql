{#- Data tests check what a run added, so a run's tests cost what it adds, not the lake.

    new_rows_only(relation): a predicate on the rows of `relation` the latest build wrote, or
    none for a table read whole (a small one, or any with var full_tests: the deep audit,
    `dx7lake dbt test --vars '{full_tests: true}'`). The large tables and what is new in them:
    - per note or per file (raw notes and the views on them, track_summary, rejected_phrases):
      the files of the bronze parts the latest loading run loaded (raw.bronze_parts, by midi_id);
    - incremental models stamped with built_at: the rows of their latest build (built_at is one
      transaction's timestamp, so max(built_at) is exactly the latest build's rows);
    - gold.renders (the gold source, tested by every run's validation): the rows the latest
      loading run upserted, by loaded_at, which load_renders stamps in the transaction that also
      writes the part's row in the ledger gold.manifest_parts: every row loaded at or after the
      ledger's first part of that run (by run_id, the latest loaded part's).
    Tests are stateless: they read the newest rows when they run, so `dbt test` after
    `dbt build` checks the same rows, and so does the retry of a model's Airflow task (`dbt build`
    on that model: its build finds nothing new, then its tests run again). A row a failed run
    left is checked again only while it is the newest, or by the deep audit.

    new_keys_only(relation, columns): every row sharing a key with a new row, old rows too: what
    a key test (unique, unique_combination) must read so a new row repeating an old key is caught
    (through the key's index, so still what the run adds).

    Both give the planner the new keys as an array (`= any(array(...))`): it then reads them
    through the index, where a join or `in` on the subquery takes its estimate (far more rows
    than a run adds) and scans the whole table. -#}
{% macro new_rows_only(relation) -%}
    {%- set newness = {
        'detailed_notes': 'files',
        'stg_detailed_notes': 'files',
        'int_notes_bucketed': 'files',
        'track_summary': 'files',
        'rejected_phrases': 'files',
        'int_phrases': 'built',
        'phrase_contents': 'built',
        'phrases': 'built',
        'phrase_stats': 'built',
        'int_file_programs': 'built',
        'int_file_pitches': 'built',
        'int_file_velocities': 'built',
        'int_rejected_contents': 'built',
        'renders': 'loaded',
    }.get(relation.identifier) -%}
    {%- if var('full_tests') or not newness -%}
        {{ return(none) }}
    {%- elif newness == 'built' -%}
        {#- the newest built_at as a literal, read when the test runs: the planner then estimates
            the latest build's rows from the column's statistics and reads them by its index (a
            subquery's value it does not know, and takes 1 / (number of builds) of the table) -#}
        {%- set newest = none -%}
        {%- if execute and load_relation(relation) is not none -%}
            {%- set newest = run_query('select max(built_at)::text from ' ~ relation).columns[0].values()[0] -%}
        {%- endif -%}
        {%- if newest -%}
            {{ return("built_at = '" ~ newest ~ "'::timestamptz") }}
        {%- endif -%}
        {{ return('built_at = (select max(built_at) from ' ~ relation ~ ')') }}
    {%- elif newness == 'loaded' -%}
        {%- set ledger = api.Relation.create(database=relation.database, schema='gold', identifier='manifest_parts') -%}
        {%- set since = '(select min(loaded_at) from ' ~ ledger ~ ' where run_id is not distinct from ('
            ~ 'select run_id from ' ~ ledger ~ ' order by loaded_at desc limit 1))' -%}
        {#- as a literal when the test runs, as built_at above: the planner then reads the run's
            rows by the loaded_at index; none (the whole table) while the ledger is empty -#}
        {%- if execute and load_relation(ledger) is not none -%}
            {%- set first = run_query('select ' ~ since ~ '::text').columns[0].values()[0] -%}
            {{ return("loaded_at >= '" ~ first ~ "'::timestamptz" if first else none) }}
        {%- endif -%}
        {{ return('loaded_at >= ' ~ since) }}
    {%- else -%}
        {%- set parts = api.Relation.create(database=relation.database, schema='raw', identifier='bronze_parts') -%}
        {{ return(
            'midi_id = any(array(select unnest(midi_ids) from ' ~ parts ~ ' where run_id = '
            ~ '(select run_id from ' ~ parts ~ ' order by loaded_at desc limit 1)))'
        ) }}
    {%- endif -%}
{%- endmacro %}

{% macro new_keys_only(relation, columns) -%}
    {%- set new_rows = new_rows_only(relation) -%}
    {%- if not new_rows -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set keys = 'select ' ~ columns | join(', ') ~ ' from ' ~ relation ~ ' where ' ~ new_rows -%}
    {%- if columns | length == 1 -%}
        {{ return(columns[0] ~ ' = any(array(' ~ keys ~ '))') }}
    {%- endif -%}
    {{ return('(' ~ columns | join(', ') ~ ') in (' ~ keys ~ ')') }}
{%- endmacro %}
