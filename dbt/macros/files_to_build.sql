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
