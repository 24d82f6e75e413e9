-- How much music each split holds, by General MIDI program (drums apart).
select
    -- the song's split: a note belongs to its song (phrases may move split to avoid leakage)
    song_set_type as set_type,
    coalesce(program, 0) as program,
    is_drum,
    count(*) as n_notes,
    count(distinct track_id) as n_tracks,
    count(distinct midi_id) as n_files
from {{ ref('stg_detailed_notes') }}
group by song_set_type, coalesce(program, 0), is_drum
