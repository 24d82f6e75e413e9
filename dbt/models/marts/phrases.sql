-- A phrase: the notes of one track that start in one window of `beats_per_phrase` beats,
-- with the split of its content (see phrase_contents), so no content crosses splits.
{{
    config(
        indexes=[
            {'columns': ['phrase_id'], 'unique': true},
            {'columns': ['content_hash']},
            {'columns': ['midi_id']},
            {'columns': ['track_id']},
            {'columns': ['p']},
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
    phrases.p
from {{ ref('int_phrases') }} as phrases
inner join {{ ref('phrase_contents') }} as contents using (content_hash)
