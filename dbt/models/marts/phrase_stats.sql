-- Musical statistics of each phrase, for filtering and for the dataset card; the density is
-- given per beat and per second of the rendered audio. Phrases of the dataset only (not
-- those set aside in rejected_phrases).
{{ config(indexes=[{'columns': ['phrase_id'], 'unique': true}, {'columns': ['content_hash']}]) }}

select
    phrase_id,
    content_hash,
    n_notes,
    pitch_min,
    pitch_max,
    pitch_max - pitch_min as pitch_range,
    distinct_pitches,
    max_polyphony,
    round(n_notes::numeric / {{ var('beats_per_phrase') }}, 3) as notes_per_beat,
    -- at the tempo the phrases are rendered at (var bpm)
    round(n_notes::numeric * {{ var('bpm') }} / (60 * {{ var('beats_per_phrase') }}), 3) as notes_per_second
from {{ ref('int_phrases') }} as phrases
where exists (select 1 from {{ ref('phrase_contents') }} as contents where contents.content_hash = phrases.content_hash)
