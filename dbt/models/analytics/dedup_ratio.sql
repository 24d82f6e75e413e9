-- How much rendering identical phrases once saves: phrases against distinct contents,
-- per split and over all splits (a content shared by two splits counts once in 'all').
with per_split as (
    select set_type, count(*) as n_phrases, count(distinct content_hash) as unique_contents
    from {{ ref('phrases') }}
    group by set_type
),

overall as (
    select 'all' as set_type, count(*) as n_phrases, count(distinct content_hash) as unique_contents
    from {{ ref('phrases') }}
)

select
    set_type,
    n_phrases,
    unique_contents,
    1 - unique_contents::double precision / nullif(n_phrases, 0) as dedup_ratio
from (select * from per_split union all select * from overall) as splits
