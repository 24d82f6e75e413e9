-- A phrase: the notes of one track that start in one window of `beats_per_phrase` beats,
-- with the split of its content (see phrase_contents), so no content crosses splits.
--
-- Incremental by touched content: a run rewrites the phrases of the contents phrase_contents
-- recomputed since this table's newest built_at (all their phrases, old ones included: a
-- content a new train song claims moves its older test phrases to train).
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='phrase_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['phrase_id'], 'unique': true},
            {'columns': ['content_hash']},
            {'columns': ['midi_id']},
            {'columns': ['track_id']},
            {'columns': ['p']},
            {'columns': ['built_at']},
        ],
    )
}}

select
    phrases.phrase_id,
    phrases.track_id,
    phrases.midi_id,
    phrases.bucket,
    contents.set_type,
    phrases.notes,
    phrases.n_notes,
    phrases.content_hash,
    phrases.p,
    contents.built_at
from {{ ref('int_phrases') }} as phrases
inner join {{ ref('phrase_contents') }} as contents using (content_hash)
{% if is_incremental() %}
where contents.built_at > {{ watermark() }}
{% endif %}
