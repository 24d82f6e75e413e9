-- Notes per MIDI pitch and split, pitched instruments only: the range a model will hear.
--
-- Incremental by group, as notes_by_split_program: the (split, pitch) groups of the per-file
-- rows int_file_pitches wrote since this table's newest built_at, over all their files.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['set_type', 'pitch'],
        on_schema_change='fail',
    )
}}

select
    song_set_type as set_type,
    pitch,
    sum(n_notes)::bigint as n_notes,
    max(built_at) as built_at
from {{ ref('int_file_pitches') }}
{% if is_incremental() %}
where (song_set_type, pitch) in (
    select song_set_type, pitch from {{ ref('int_file_pitches') }} where built_at > {{ watermark() }}
)
{% endif %}
group by song_set_type, pitch
