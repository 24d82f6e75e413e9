-- How much music each split holds, by General MIDI program (drums apart).
select
    set_type,
    coalesce(program, 0) as program,
    is_drum,
    count(*) as n_notes,
    count(distinct track_id) as n_tracks,
    count(distinct midi_id) as n_files
from {{ ref('stg_detailed_notes') }}
group by set_type, coalesce(program, 0), is_drum
