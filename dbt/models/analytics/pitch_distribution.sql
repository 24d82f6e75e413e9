-- Notes per MIDI pitch and split, pitched instruments only: the range a model will hear.
select
    set_type,
    pitch,
    count(*) as n_notes
from {{ ref('stg_detailed_notes') }}
where not is_drum
group by set_type, pitch
