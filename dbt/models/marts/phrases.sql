-- A phrase: the notes of one track that start in one window of `beats_per_phrase` beats.
-- bucket = floor(start / window); the offset inside the window is start - window * bucket.
{% set window = var('beats_per_phrase') %}

with notes as (
    select * from {{ ref('stg_detailed_notes') }}
    {% if var('exclude_drums') %} where not is_drum {% endif %}
),

bucketed as (
    select
        track_id,
        midi_id,
        set_type,
        floor(start_beats / {{ window }})::bigint as bucket,
        round((start_beats - {{ window }} * floor(start_beats / {{ window }}))::numeric, 2) as offset_beats,
        round(duration_beats::numeric, 2) as duration_beats,
        velocity,
        pitch
    from notes
),

phrases as (
    select
        track_id,
        midi_id,
        set_type,
        bucket,
        count(*) as n_notes,
        jsonb_agg(
            jsonb_build_array(offset_beats, duration_beats, velocity, pitch)
            order by offset_beats, duration_beats, velocity, pitch
        ) as notes,
        md5(string_agg(
            concat_ws(',', offset_beats, duration_beats, velocity, pitch), ';'
            order by offset_beats, duration_beats, velocity, pitch
        )) as content_hash
    from bucketed
    group by track_id, midi_id, set_type, bucket
    having count(*) >= {{ var('min_notes') }}
)

select
    md5(track_id || ':' || bucket) as phrase_id,
    track_id,
    midi_id,
    bucket,
    set_type,
    notes,
    n_notes,
    content_hash,
    (('x' || substr(content_hash, 1, 8))::bit(32)::bigint % {{ var('render_partitions') }})::integer as p
from phrases
