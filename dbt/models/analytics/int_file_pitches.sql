-- Per file, split and MIDI pitch: its pitched notes. The additive part of pitch_distribution.
--
-- Incremental by file, as int_file_programs (delete+insert by midi_id); built_at marks the
-- dbt run that wrote a row.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['midi_id', 'pitch'], 'unique': true},
            {'columns': ['song_set_type', 'pitch']},
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
    notes.pitch,
    count(*) as n_notes,
    max(files.loaded_at) as loaded_at,
    current_timestamp as built_at
from {{ ref('stg_detailed_notes') }} as notes
inner join files using (midi_id)
where {{ in_files('notes.midi_id') }} and not notes.is_drum
group by notes.midi_id, notes.pitch
