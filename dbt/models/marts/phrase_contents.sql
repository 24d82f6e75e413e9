-- Unique phrase contents: what the render stage turns into audio, once per patch.
--
-- A content belongs to exactly one split, train first: if any train song plays it, it is
-- train; else test if any test song plays it; else validate. So test and validate never
-- hold a content the model was trained on, and test and validate never share one either.
-- Contents set aside by a render rule (rejected_phrases) are not here: nothing renders them.
-- The rules read a phrase's own columns and every phrase of a content shares their verdict,
-- so each phrase is checked where it is read (macros/render_rule_broken.sql).
--
-- Incremental by touched content: a run recomputes the contents of the phrases built since
-- its newest built_at, over all the phrases of those contents (int_phrases' content_hash
-- index), so a new train song playing a content an older test song played moves it to train.
-- built_at is the newest built_at of a content's phrases.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='content_hash',
        on_schema_change='fail',
        indexes=[
            {'columns': ['content_hash'], 'unique': true},
            {'columns': ['p']},
            {'columns': ['built_at']},
        ],
    )
}}

with phrases as (
    select * from {{ ref('int_phrases') }} as phrases
    where {{ render_rule_broken('phrases') }} is null
    {% if is_incremental() %}
    -- as an array, so the touched contents' phrases are read by the content_hash index
    and phrases.content_hash = any(array(
        select content_hash from {{ ref('int_phrases') }} where built_at > {{ watermark() }}
    ))
    {% endif %}
)

select
    content_hash,
    min(p) as p,
    (array_agg(notes order by phrase_id))[1] as notes,
    min(n_notes) as n_notes,
    count(*) as n_phrases,
    count(distinct midi_id) as n_songs,
    count(distinct song_set_type) as n_song_splits,
    case min(case song_set_type when 'train' then 0 when 'test' then 1 else 2 end)
        when 0 then 'train'
        when 1 then 'test'
        else 'validate'
    end as set_type,
    max(built_at) as built_at
from phrases
group by content_hash
