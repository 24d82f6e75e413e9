-- How busy phrases are: phrases per note count and split, with the share of the split.
-- A table over int_contents_by_size (a few hundred rows, kept incrementally): the shares of a
-- split all change whenever its total does, so they are recomputed whole, at no cost.
select
    set_type,
    n_notes,
    n_phrases,
    n_phrases::double precision / sum(n_phrases) over (partition by set_type) as share_of_split
from {{ ref('int_contents_by_size') }}
