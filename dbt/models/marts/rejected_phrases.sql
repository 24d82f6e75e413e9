-- Phrases the renderer should not take, set aside with the first rule they break; every
-- other phrase goes on to phrase_contents and is rendered. The rules depend on the content
-- alone, so all phrases of one content share their fate (phrase_contents drops the content).
--
-- too_many_notes       more than var max_notes_per_phrase notes in the window
-- pitch_out_of_range   a pitch outside [render_pitch_min, render_pitch_max]
-- note_too_short       a note shorter than var min_note_beats: a zero-length note (on and
--                      off on one tick) is held 0 samples, and the engine sounds nothing
-- note_too_long        a note held longer than var max_note_beats (a stuck note)
--
-- A view: the rules read each phrase's own notes, so a reader that filters (phrase_contents by
-- content_hash, song_summary by midi_id) checks only those phrases through int_phrases' indexes.
{{ config(materialized='view') }}

with phrases as (
    select
        phrases.*,
        durations.duration_min,
        durations.duration_max
    from {{ ref('int_phrases') }} as phrases
    cross join lateral (
        select min((note ->> 1)::numeric) as duration_min, max((note ->> 1)::numeric) as duration_max
        from jsonb_array_elements(phrases.notes) as note
    ) as durations
),

checked as (
    select
        *,
        case
            when n_notes > {{ var('max_notes_per_phrase') }} then 'too_many_notes'
            when pitch_min < {{ var('render_pitch_min') }} or pitch_max > {{ var('render_pitch_max') }}
                then 'pitch_out_of_range'
            when duration_min < {{ var('min_note_beats') }} then 'note_too_short'
            when duration_max > {{ var('max_note_beats') }} then 'note_too_long'
        end as reason
    from phrases
)

select
    phrase_id,
    track_id,
    midi_id,
    bucket,
    song_set_type,
    content_hash,
    n_notes,
    pitch_min,
    pitch_max,
    duration_min as duration_min_beats,
    duration_max as duration_max_beats,
    reason
from checked
where reason is not null
