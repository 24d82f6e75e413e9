-- Notes per MIDI velocity and split, pitched instruments only: the dynamics a model will hear.
select
    -- the song's split: a note belongs to its song (phrases may move split to avoid leakage)
    song_set_type as set_type,
    velocity,
    count(*) as n_notes
from {{ ref('stg_detailed_notes') }}
where not is_drum
group by song_set_type, velocity
