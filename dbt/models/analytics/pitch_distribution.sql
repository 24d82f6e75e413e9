-- Notes per MIDI pitch and split, pitched instruments only: the range a model will hear.
select
    -- the song's split: a note belongs to its song (phrases may move split to avoid leakage)
    song_set_type as set_type,
    pitch,
    count(*) as n_notes
from {{ ref('stg_detailed_notes') }}
where not is_drum
group by song_set_type, pitch
