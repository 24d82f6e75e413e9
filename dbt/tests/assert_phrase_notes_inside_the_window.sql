-- Every rendered note starts inside its window and has a MIDI pitch and a sounding velocity.
select c.content_hash, note
from {{ ref('phrase_contents') }} as c
cross join lateral jsonb_array_elements(c.notes) as note
where (note ->> 0)::numeric < 0
   or (note ->> 0)::numeric >= {{ var('beats_per_phrase') }}
   or (note ->> 1)::numeric < 0
   or (note ->> 2)::integer not between 1 and 127
   or (note ->> 3)::integer not between 0 and 127
