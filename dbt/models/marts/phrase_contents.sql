-- Unique phrase contents: what the render stage turns into audio, once per patch.
select
    content_hash,
    min(p) as p,
    (array_agg(notes))[1] as notes,
    min(n_notes) as n_notes,
    count(*) as n_phrases
from {{ ref('phrases') }}
group by content_hash
