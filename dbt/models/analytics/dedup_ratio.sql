-- How much rendering identical phrases once saves: phrases against distinct contents,
-- per split and over all splits. A table over int_contents_by_size (a few hundred rows, kept
-- incrementally). A content belongs to one split (phrase_contents; the leakage test checks
-- it), so the distinct contents of all splits are the sum of each split's.
with per_split as (
    select set_type, sum(n_phrases)::bigint as n_phrases, sum(n_contents)::bigint as unique_contents
    from {{ ref('int_contents_by_size') }}
    group by set_type
),

overall as (
    select
        'all' as set_type,
        coalesce(sum(n_phrases), 0)::bigint as n_phrases,
        coalesce(sum(unique_contents), 0)::bigint as unique_contents
    from per_split
)

select
    set_type,
    n_phrases,
    unique_contents,
    1 - unique_contents::double precision / nullif(n_phrases, 0) as dedup_ratio
from (select * from per_split union all select * from overall) as splits
