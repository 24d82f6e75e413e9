-- One row per song (midi_id): its split, size, phrases, how many of them moved split and how
-- many were set aside before rendering (rejected_phrases).
{{ config(indexes=[{'columns': ['midi_id'], 'unique': true}]) }}

with tracks as (
    select
        midi_id,
        min(source_key) as source_key,
        min(song_set_type) as song_set_type,
        count(*) as n_tracks,
        sum(n_notes) as n_notes,
        max(length_beats) as length_beats,
        max(length_seconds) as length_seconds
    from {{ ref('track_summary') }}
    group by midi_id
),

phrases as (
    select
        phrases.midi_id,
        count(*) as n_phrases,
        count(distinct phrases.content_hash) as n_contents,
        count(*) filter (where phrases.song_set_type <> contents.set_type) as n_phrases_moved
    from {{ ref('int_phrases') }} as phrases
    inner join {{ ref('phrase_contents') }} as contents using (content_hash)
    group by phrases.midi_id
),

rejected as (
    select midi_id, count(*) as n_phrases_rejected
    from {{ ref('rejected_phrases') }}
    group by midi_id
)

select
    tracks.midi_id,
    tracks.source_key,
    tracks.song_set_type,
    tracks.n_tracks,
    tracks.n_notes,
    tracks.length_beats,
    tracks.length_seconds,
    coalesce(phrases.n_phrases, 0) as n_phrases,
    coalesce(phrases.n_contents, 0) as n_contents,
    coalesce(phrases.n_phrases_moved, 0) as n_phrases_moved,
    coalesce(rejected.n_phrases_rejected, 0) as n_phrases_rejected
from tracks
left join phrases using (midi_id)
left join rejected using (midi_id)
