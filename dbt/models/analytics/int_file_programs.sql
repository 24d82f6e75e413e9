-- Per file, split, General MIDI program and drum flag: its notes and tracks. The additive
-- part of notes_by_split_program: a track belongs to one file, so the mart's distinct counts
-- are sums of these rows (tracks) and counts of them (files).
--
-- Incremental by file, as int_phrases: a run takes the files of bronze parts loaded since
-- this table last saw them and replaces their rows (delete+insert by midi_id). built_at marks
-- the dbt run that wrote a row: the mart recomputes the groups of rows newer than its own.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['midi_id', 'program', 'is_drum'], 'unique': true},
            {'columns': ['song_set_type', 'program', 'is_drum']},
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
    coalesce(notes.program, 0) as program,
    notes.is_drum,
    count(*) as n_notes,
    count(distinct notes.track_id) as n_tracks,
    max(files.loaded_at) as loaded_at,
    current_timestamp as built_at
from {{ ref('stg_detailed_notes') }} as notes
inner join files using (midi_id)
where {{ in_files('notes.midi_id') }}
group by notes.midi_id, coalesce(notes.program, 0), notes.is_drum
