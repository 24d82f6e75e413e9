-- Notes per MIDI velocity and split, pitched instruments only: the dynamics a model will hear.
--
-- Incremental by group, as notes_by_split_program: the (split, velocity) groups of the
-- per-file rows int_file_velocities wrote since this table's newest built_at, over all their files.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['set_type', 'velocity'],
        on_schema_change='fail',
    )
}}

select
    song_set_type as set_type,
    velocity,
    sum(n_notes)::bigint as n_notes,
    max(built_at) as built_at
from {{ ref('int_file_velocities') }}
{% if is_incremental() %}
where (song_set_type, velocity) in (
    select song_set_type, velocity from {{ ref('int_file_velocities') }} where built_at > {{ watermark() }}
)
{% endif %}
group by song_set_type, velocity
