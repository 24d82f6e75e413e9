-- Per split and phrase size (notes per phrase): the distinct contents and their phrases. What
-- phrase_density and dedup_ratio aggregate: a content is in one split (phrase_contents) and
-- all its phrases have its size, so phrases per split and size are sums of its n_phrases.
--
-- Incremental by size: a run recomputes the sizes of the contents phrase_contents recomputed
-- since this table's newest built_at, in every split at once (delete+insert by n_notes). A
-- content's size never changes, only its split (a new train song claims it), so the groups it
-- can leave are the other splits of its size: recomputing the whole size keeps them exact,
-- and a group left empty is deleted and not inserted again.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='n_notes',
        on_schema_change='fail',
        indexes=[{'columns': ['set_type', 'n_notes'], 'unique': true}, {'columns': ['built_at']}],
    )
}}

select
    set_type,
    n_notes,
    count(*) as n_contents,
    sum(n_phrases)::bigint as n_phrases,
    max(built_at) as built_at
from {{ ref('phrase_contents') }}
{% if is_incremental() %}
where n_notes in (select n_notes from {{ ref('phrase_contents') }} where built_at > {{ watermark() }})
{% endif %}
group by set_type, n_notes
