{#- The files an incremental model keyed by midi_id must (re)build: those of bronze parts
    loaded since the model last saw them (a file whose ledger loaded_at is newer than its
    rows' there, or that has none); every file on a full build. -#}
{% macro files_to_build() -%}
    select midi_id, loaded_at
    from {{ ref('stg_loaded_files') }} as f
    {% if is_incremental() %}
    where not exists (
        select 1 from {{ this }} as t
        where t.midi_id = f.midi_id and t.loaded_at >= f.loaded_at
    )
    {% endif %}
{%- endmacro %}

{#- On an incremental run, `column` among the files of the CTE `files` (files_to_build()), as an
    array: the planner then reads those files' rows through the midi_id index. Joined to the CTE
    alone, it takes the anti-join's estimate (thousands of files where a rerun has a few) and
    scans every note of the lake. On a full build, true: there the scan is right. -#}
{% macro in_files(column, files='files') -%}
    {% if is_incremental() %}{{ column }} = any(array(select midi_id from {{ files }})){% else %}true{% endif %}
{%- endmacro %}

{#- A per-file table of pitched notes counted by one note column (pitch, velocity): the
    additive part of that column's distribution mart. Incremental by file as int_phrases
    (delete+insert by midi_id, files_to_build()); built_at marks the dbt run that wrote a row,
    and the mart recomputes the groups of rows newer than its own. -#}
{% macro per_file_note_counts(column) -%}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['midi_id', column], 'unique': true},
            {'columns': ['song_set_type', column]},
            {'columns': ['built_at']},
        ],
    )
}}

with files as (
    {{ files_to_build() }}
)

select
    notes.midi_id,
    min(notes.song_set_type) as song_set_type,
    notes.{{ column }},
    count(*) as n_notes,
    max(files.loaded_at) as loaded_at,
    current_timestamp as built_at
from {{ ref('stg_detailed_notes') }} as notes
inner join files using (midi_id)
where {{ in_files('notes.midi_id') }} and not notes.is_drum
group by notes.midi_id, notes.{{ column }}
{%- endmacro %}
