-- Typed, renamed notes: one row per note event of the bronze contract.
with source as (
    select * from {{ source('raw', 'detailed_notes') }}
)

select
    message_id as note_id,
    track_id,
    midi_id,
    set_type as song_set_type,
    p as bronze_p,
    cast(start_time as double precision) as start_beats,
    cast(duration as double precision) as duration_beats,
    cast(velocity as integer) as velocity,
    cast(note as integer) as pitch,
    channel,
    program,
    is_drum,
    track_index,
    start_seconds,
    duration_seconds,
    source_key
from source
