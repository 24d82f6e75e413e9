-- Contents set aside by a render rule, one row each: its reason, size and phrases, from the
-- view rejected_phrases (which applies the rules to int_phrases' columns). What
-- rejected_by_reason sums, so that a run's counts by reason read the few rejected contents,
-- not every phrase of the lake through the view.
--
-- Incremental by touched content, as phrase_contents: a run recomputes the rejected contents
-- of the phrases built since its newest built_at, over all the phrases of those contents
-- (int_phrases' content_hash index). A content's rule depends on the content alone, so a
-- content never moves between this table and phrase_contents. The watermark moves only when a
-- run sets a content aside; until then a run reads the phrases built since the last one that
-- did, by int_phrases' built_at index (12% of the songs of real files have such a phrase).
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='content_hash',
        on_schema_change='fail',
        indexes=[{'columns': ['content_hash'], 'unique': true}, {'columns': ['built_at']}],
    )
}}

select
    content_hash,
    min(reason) as reason,
    min(n_notes) as n_notes,
    count(*) as n_phrases,
    count(distinct midi_id) as n_songs,
    max(built_at) as built_at
from {{ ref('rejected_phrases') }} as rejected
{% if is_incremental() %}
-- as an array, so the touched contents' phrases are read by int_phrases' content_hash index
where rejected.content_hash = any(array(
    select content_hash from {{ ref('rejected_phrases') }} as new where new.built_at > {{ watermark() }}
))
{% endif %}
group by content_hash
