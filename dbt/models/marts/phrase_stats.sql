-- Musical statistics of each phrase, for filtering and for the dataset card; the density is
-- given per beat and per second of the rendered audio. Phrases of the dataset only (not
-- those set aside in rejected_phrases).
--
-- Incremental as phrases: the phrases of the contents phrase_contents recomputed since this
-- table's newest built_at.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='phrase_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['phrase_id'], 'unique': true},
            {'columns': ['content_hash']},
            {'columns': ['built_at']},
        ],
    )
}}

select
    phrases.phrase_id,
    phrases.content_hash,
    phrases.n_notes,
    pitch_min,
    pitch_max,
    pitch_max - pitch_min as pitch_range,
    distinct_pitches,
    max_polyphony,
    round(phrases.n_notes::numeric / {{ var('beats_per_phrase') }}, 3) as notes_per_beat,
    -- at var bpm, the default render profile's tempo (silver is the same for every profile:
    -- a profile at another tempo plays notes_per_beat * its bpm / 60 notes a second)
    round(phrases.n_notes::numeric * {{ var('bpm') }} / (60 * {{ var('beats_per_phrase') }}), 3) as notes_per_second,
    contents.built_at
from {{ ref('int_phrases') }} as phrases
inner join {{ ref('phrase_contents') }} as contents using (content_hash)
{% if is_incremental() %}
where contents.built_at > {{ watermark() }}
{% endif %}
