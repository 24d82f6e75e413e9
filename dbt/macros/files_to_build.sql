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
