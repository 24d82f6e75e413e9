-- Notes per MIDI velocity and split, pitched instruments only: the dynamics a model will hear.
select
    set_type,
    velocity,
    count(*) as n_notes
from {{ ref('stg_detailed_notes') }}
where not is_drum
group by set_type, velocity
