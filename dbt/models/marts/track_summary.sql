-- One row per track (a MIDI track and channel of one song): its notes and its phrases.
--
-- Incremental by file, as int_phrases: a run takes the files of bronze parts loaded since
-- this table last saw them and replaces their tracks (delete+insert by midi_id).
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[{'columns': ['track_id'], 'unique': true}, {'columns': ['midi_id']}],
    )
}}

with files as (
    {{ files_to_build() }}
),

notes as (
    select
        track_id,
        min(midi_id) as midi_id,
        min(song_set_type) as song_set_type,
        min(source_key) as source_key,
        min(track_index) as track_index,
        min(channel) as channel,
        min(program) as program,
        bool_or(is_drum) as is_drum,
        count(*) as n_notes,
        min(pitch) as pitch_min,
        max(pitch) as pitch_max,
        max(start_beats + duration_beats) as length_beats,
        max(start_seconds + duration_seconds) as length_seconds,
        max(files.loaded_at) as loaded_at
    from {{ ref('stg_detailed_notes') }}
    inner join files using (midi_id)
    where {{ in_files('midi_id') }}
    group by track_id
),

phrases as (
    select
        track_id,
        count(*) as n_phrases,
        count(distinct content_hash) as n_contents
    from {{ ref('int_phrases') }}
    where {{ in_files('midi_id') }}
    group by track_id
)

select
    notes.track_id,
    notes.midi_id,
    notes.song_set_type,
    notes.source_key,
    notes.track_index,
    notes.channel,
    notes.program,
    notes.is_drum,
    notes.n_notes,
    notes.pitch_min,
    notes.pitch_max,
    notes.length_beats,
    notes.length_seconds,
    coalesce(phrases.n_phrases, 0) as n_phrases,
    coalesce(phrases.n_contents, 0) as n_contents,
    notes.loaded_at
from notes
left join phrases using (track_id)
