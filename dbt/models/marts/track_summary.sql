-- One row per track (a MIDI track and channel of one song): its notes and its phrases.
{{ config(indexes=[{'columns': ['track_id'], 'unique': true}, {'columns': ['midi_id']}]) }}

with notes as (
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
        max(start_seconds + duration_seconds) as length_seconds
    from {{ ref('stg_detailed_notes') }}
    group by track_id
),

phrases as (
    select
        track_id,
        count(*) as n_phrases,
        count(distinct content_hash) as n_contents
    from {{ ref('int_phrases') }}
    group by track_id
)

select
    notes.*,
    coalesce(phrases.n_phrases, 0) as n_phrases,
    coalesce(phrases.n_contents, 0) as n_contents
from notes
left join phrases using (track_id)
