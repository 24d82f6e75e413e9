-- One row per (track, window): the phrase's ordered content, its hash and its statistics.
--
-- content = the notes as (offset, duration) in hundredths of a beat, velocity, pitch,
-- sorted; content_hash = md5 of 'o,d,v,n;o,d,v,n;...' over that list, so any language can
-- recompute it. p = first 32 bits of the hash modulo the partition count: it depends on
-- the content alone and never moves when more songs arrive.
--
-- Incremental by bronze partition: a run rebuilds only the partitions loaded since the
-- last one (their latest ops.load_stats row is newer than what this table holds), the same
-- replace-a-partition rule as the raw load: the pre-hook drops their old phrases (also
-- when a partition was reloaded empty), then the new ones are appended, in one transaction.
{#- raw: a hook is rendered when it runs, where is_incremental() and this are known -#}
{% set drop_reloaded_partitions %}{% raw %}
    {% if is_incremental() %}
    delete from {{ this }} as t
    using (
        select p, max(loaded_at) as loaded_at from {{ ref('stg_load_stats') }} group by p
    ) as l
    where l.p = t.bronze_p and l.loaded_at > t.loaded_at
    {% endif %}
{% endraw %}{% endset %}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook=drop_reloaded_partitions,
        on_schema_change='fail',
        indexes=[
            {'columns': ['phrase_id'], 'unique': true},
            {'columns': ['content_hash']},
            {'columns': ['bronze_p']},
        ],
    )
}}

with partition_loads as (
    select p as bronze_p, max(loaded_at) as loaded_at
    from {{ ref('stg_load_stats') }}
    group by p
),

{% if is_incremental() %}
changed as (
    select l.bronze_p, l.loaded_at
    from partition_loads as l
    where not exists (
        select 1 from {{ this }} as t
        where t.bronze_p = l.bronze_p and t.loaded_at >= l.loaded_at
    )
),
{% else %}
changed as (
    select * from partition_loads
),
{% endif %}

notes as (
    select n.*, c.loaded_at
    from {{ ref('int_notes_bucketed') }} as n
    inner join changed as c on c.bronze_p = n.bronze_p
),

-- max polyphony: a running count over note starts (+1) and ends (-1), ends first on ties,
-- so a note ending where another starts does not overlap it. A zero-length note (note-on
-- and note-off on one tick, common in real files; the engine still sounds it) is sounding
-- at its onset: it ends one grid step later, so it counts there and leaves no gap.
events as (
    select track_id, bucket, offset_cb as at_cb, 1 as delta from notes
    union all
    select track_id, bucket, offset_cb + greatest(duration_cb, 1) as at_cb, -1 as delta from notes
),

sounding as (
    select
        track_id,
        bucket,
        sum(delta) over (
            partition by track_id, bucket order by at_cb, delta rows unbounded preceding
        ) as n_sounding
    from events
),

polyphony as (
    select track_id, bucket, max(n_sounding) as max_polyphony
    from sounding
    group by track_id, bucket
),

phrases as (
    select
        track_id,
        bucket,
        min(midi_id) as midi_id,
        min(song_set_type) as song_set_type,
        min(bronze_p) as bronze_p,
        max(loaded_at) as loaded_at,
        count(*) as n_notes,
        jsonb_agg(
            jsonb_build_array(round(offset_cb / 100.0, 2), round(duration_cb / 100.0, 2), velocity, pitch)
            order by offset_cb, duration_cb, velocity, pitch
        ) as notes,
        md5(string_agg(
            concat_ws(',', offset_cb, duration_cb, velocity, pitch), ';'
            order by offset_cb, duration_cb, velocity, pitch
        )) as content_hash,
        min(pitch) as pitch_min,
        max(pitch) as pitch_max,
        count(distinct pitch) as distinct_pitches
    from notes
    group by track_id, bucket
    having count(*) >= {{ var('min_notes') }}
)

select
    md5(phrases.track_id || ':' || phrases.bucket) as phrase_id,
    phrases.track_id,
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
    polyphony.max_polyphony
from phrases
inner join polyphony using (track_id, bucket)
