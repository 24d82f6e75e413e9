-- What the no-leakage rule moved: phrases (and their contents and songs) whose song is in
-- one split but whose content was claimed by an earlier split (train, then test).
-- A view: a few rows read now and then (tests, dashboards), never worth a table rebuild.
{{ config(materialized='view') }}

select
    phrases.song_set_type as from_split,
    contents.set_type as to_split,
    count(*) as n_phrases,
    count(distinct phrases.content_hash) as n_contents,
    count(distinct phrases.midi_id) as n_songs
from {{ ref('int_phrases') }} as phrases
inner join {{ ref('phrase_contents') }} as contents using (content_hash)
where phrases.song_set_type <> contents.set_type
group by phrases.song_set_type, contents.set_type
