-- Every rendered note starts inside its window and has a MIDI pitch and a sounding velocity
-- (in the contents the latest build wrote; in all with var full_tests).
{% set new_rows = new_rows_only(ref('phrase_contents')) %}
select c.content_hash, note
from (
    select * from {{ ref('phrase_contents') }} {% if new_rows %} where {{ new_rows }} {% endif %}
) as c
cross join lateral jsonb_array_elements(c.notes) as note
where (note ->> 0)::numeric < 0
   or (note ->> 0)::numeric >= {{ var('beats_per_phrase') }}
   or (note ->> 1)::numeric < 0
   or (note ->> 2)::integer not between 1 and 127
   or (note ->> 3)::integer not between 0 and 127
