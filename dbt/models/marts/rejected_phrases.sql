-- Phrases the renderer should not take, set aside with the first rule they break
-- (macros/render_rule_broken.sql); every other phrase goes on to phrase_contents and is
-- rendered. The rules depend on the content alone, so all phrases of one content share their
-- fate (phrase_contents drops the content).
--
-- A view over int_phrases' own columns: a reader that filters (song_summary by midi_id)
-- checks only those phrases through int_phrases' indexes, and no reader parses notes.
{{ config(materialized='view') }}

with checked as (
    select phrases.*, {{ render_rule_broken('phrases') }} as reason
    from {{ ref('int_phrases') }} as phrases
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
    round(duration_min_cb / 100.0, 2) as duration_min_beats,
    round(duration_max_cb / 100.0, 2) as duration_max_beats,
    reason,
    built_at
from checked
where reason is not null
