-- One row per song (midi_id): its split, size, phrases, how many of them moved split and how
-- many were set aside before rendering (rejected_phrases).
--
-- Incremental: a run recomputes the songs of files loaded since this table last saw them,
-- and the songs that play a content phrase_contents recomputed since this table's newest
-- built_at (a content moved to train moves phrases of older songs: n_phrases_moved changes).
-- The touched contents and the songs go to each read as arrays, so it reads them through the
-- content_hash and midi_id indexes: a rerun reads the phrases of its songs, not the lake's.
-- depends_on: {{ ref('stg_loaded_files') }}
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[{'columns': ['midi_id'], 'unique': true}],
    )
}}

{% if is_incremental() %}
with songs as (
    select midi_id from ({{ files_to_build() }}) as files
    union
    select midi_id from {{ ref('int_phrases') }}
    where content_hash = any(array(
        select content_hash from {{ ref('phrase_contents') }} where built_at > {{ watermark() }}
    ))
),

tracks as (
{% else %}
with tracks as (
{% endif %}
    select
        midi_id,
        min(source_key) as source_key,
        min(song_set_type) as song_set_type,
        count(*) as n_tracks,
        sum(n_notes) as n_notes,
        max(length_beats) as length_beats,
        max(length_seconds) as length_seconds,
        max(loaded_at) as loaded_at
    from {{ ref('track_summary') }}
    {% if is_incremental() %} where midi_id = any(array(select midi_id from songs)) {% endif %}
    group by midi_id
),

phrases as (
    select
        phrases.midi_id,
        count(*) as n_phrases,
        count(distinct phrases.content_hash) as n_contents,
        count(*) filter (where phrases.song_set_type <> contents.set_type) as n_phrases_moved,
        max(contents.built_at) as built_at
    from {{ ref('int_phrases') }} as phrases
    inner join {{ ref('phrase_contents') }} as contents using (content_hash)
    {% if is_incremental() %} where phrases.midi_id = any(array(select midi_id from songs)) {% endif %}
    group by phrases.midi_id
),

rejected as (
    select midi_id, count(*) as n_phrases_rejected
    from {{ ref('rejected_phrases') }}
    {% if is_incremental() %} where midi_id = any(array(select midi_id from songs)) {% endif %}
    group by midi_id
)

select
    tracks.midi_id,
    tracks.source_key,
    tracks.song_set_type,
    tracks.n_tracks,
    tracks.n_notes,
    tracks.length_beats,
    tracks.length_seconds,
    coalesce(phrases.n_phrases, 0) as n_phrases,
    coalesce(phrases.n_contents, 0) as n_contents,
    coalesce(phrases.n_phrases_moved, 0) as n_phrases_moved,
    coalesce(rejected.n_phrases_rejected, 0) as n_phrases_rejected,
    tracks.loaded_at,
    phrases.built_at
from tracks
left join phrases using (midi_id)
left join rejected using (midi_id)
