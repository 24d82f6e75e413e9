-- One row per (track, window): the phrase's ordered content, its hash and its statistics.
--
-- content = the notes as (offset, duration) in hundredths of a beat, velocity, pitch,
-- sorted; content_hash = md5 of 'o,d,v,n;o,d,v,n;...' over that list, so any language can
-- recompute it. p = first 32 bits of the hash modulo the partition count: it depends on
-- the content alone and never moves when more songs arrive.
--
-- Incremental by file: a run takes the files of bronze parts loaded since this table last
-- saw them (a file whose ledger loaded_at is newer than its phrases' here, or that has none)
-- and replaces their phrases (delete+insert by midi_id), so a part loaded again replaces its
-- files' phrases and never duplicates them. built_at marks the run that (re)built a row:
-- the marts take the phrases built since their own newest built_at.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='midi_id',
        on_schema_change='fail',
        indexes=[
            {'columns': ['phrase_id'], 'unique': true},
            {'columns': ['content_hash']},
            {'columns': ['midi_id']},
            {'columns': ['built_at']},
        ],
    )
}}

with files as (
    {{ files_to_build() }}
),

notes as (
    -- grouped and sorted by track_key: "C" compares bytes, the database's collation would
    -- compare the track ids through strcoll (10% of a sort of the notes at 3.4 M notes)
    select n.*, n.track_id collate "C" as track_key, f.loaded_at
    from {{ ref('int_notes_bucketed') }} as n
    inner join files as f using (midi_id)
    where {{ in_files('n.midi_id') }}
),

phrases as (
    select
        track_key,
        bucket,
        min(midi_id) as midi_id,
        min(song_set_type) as song_set_type,
        min(bronze_p) as bronze_p,
        max(loaded_at) as loaded_at,
        count(*) as n_notes,
        -- the jsonb parsed from its text: jsonb_agg of jsonb_build_array made the aggregation 24% slower
        ('[[' || string_agg(
            concat_ws(',', round(offset_cb / 100.0, 2), round(duration_cb / 100.0, 2), velocity, pitch), '],['
            order by offset_cb, duration_cb, velocity, pitch
        ) || ']]')::jsonb as notes,
        md5(string_agg(
            concat_ws(',', offset_cb, duration_cb, velocity, pitch), ';'
            order by offset_cb, duration_cb, velocity, pitch
        )) as content_hash,
        min(pitch) as pitch_min,
        max(pitch) as pitch_max,
        count(distinct pitch) as distinct_pitches,
        min(duration_cb) as duration_min_cb,
        max(duration_cb) as duration_max_cb,
        -- the notes' starts and ends, each sorted, for max_polyphony below (the starts in the
        -- order the sort gives; a zero-length note ends one grid step after its onset)
        array_agg(offset_cb order by offset_cb, duration_cb, velocity, pitch) as starts_cb,
        array_agg(offset_cb + greatest(duration_cb, 1) order by offset_cb + greatest(duration_cb, 1)) as ends_cb
    from notes
    group by track_key, bucket
    having count(*) >= {{ var('min_notes') }}
)

select
    md5(phrases.track_key || ':' || phrases.bucket) as phrase_id,
    phrases.track_key collate "default" as track_id,
    phrases.midi_id,
    phrases.bucket,
    phrases.song_set_type,
    phrases.bronze_p,
    phrases.loaded_at,
    phrases.notes,
    phrases.n_notes,
    phrases.content_hash,
    (('x' || substr(phrases.content_hash, 1, 8))::bit(32)::bigint % {{ var('render_partitions') }})::integer as p,
    phrases.pitch_min,
    phrases.pitch_max,
    phrases.distinct_pitches,
    phrases.duration_min_cb,
    phrases.duration_max_cb,
    -- max polyphony: the most notes sounding at once, which is at some note's start: the notes
    -- started by then less those ended by then (width_bucket: how many of the sorted ends are
    -- at or before it, by binary search), so a note ending where another starts does not
    -- overlap it. A zero-length note (note-on and note-off on one tick, common in real files;
    -- the engine still sounds it) is sounding at its onset and leaves no gap. Per phrase from
    -- its arrays, in the one aggregation: the whole model 9.4 to 10.1 s at 3.4 M notes, against
    -- 10.8 to 11.7 s with a running count over the arrays' events (sorted), and 15.6 to 15.9 s
    -- with that count as a window over every note's two events (a second scan and sort)
    (
        select max(started - width_bucket(at_cb, phrases.ends_cb))
        from unnest(phrases.starts_cb) with ordinality as starts (at_cb, started)
    ) as max_polyphony,
    current_timestamp as built_at
from phrases
