-- How busy phrases are: phrases per note count and split, with the share of the split.
with counts as (
    select set_type, n_notes, count(*) as n_phrases
    from {{ ref('phrases') }}
    group by set_type, n_notes
)

select
    set_type,
    n_notes,
    n_phrases,
    n_phrases::double precision / sum(n_phrases) over (partition by set_type) as share_of_split
from counts
