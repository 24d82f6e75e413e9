-- Every pitched note placed in its phrase window, on the 0.01-beat grid of phrase content.
--
-- The start is put on the grid first (hundredths of a beat, round half to even like
-- Python's round), then bucket = floor(start / window) and offset = start - window * bucket.
-- (The original article subtracted the bucket number instead of window * bucket.) Doing the
-- rounding before the bucketing keeps every offset inside [0, window): a note played 0.004
-- beats early on a downbeat opens the next phrase instead of sitting at offset 4.00.
{% set window_cb = (var('beats_per_phrase') * 100) | round | int %}

with notes as (
    select * from {{ ref('stg_detailed_notes') }}
    {% if var('exclude_drums') %} where not is_drum {% endif %}
),

on_grid as (
    select
        note_id,
        track_id,
        midi_id,
        song_set_type,
        bronze_p,
        round(start_beats * 100)::bigint as start_cb,
        round(duration_beats * 100)::bigint as duration_cb,
        velocity,
        pitch
    from notes
)

select
    note_id,
    track_id,
    midi_id,
    song_set_type,
    bronze_p,
    floor(start_cb / {{ window_cb }}.0)::bigint as bucket,
    start_cb - {{ window_cb }} * floor(start_cb / {{ window_cb }}.0)::bigint as offset_cb,
    duration_cb,
    velocity,
    pitch
from on_grid
