-- How much music each split holds, by General MIDI program (drums apart).
--
-- Incremental by group: a run recomputes the (split, program, drum) groups of the per-file
-- rows int_file_programs wrote since this table's newest built_at, over all their files
-- (delete+insert by the group). The split is the song's (a note belongs to its song; phrases
-- may move split, notes do not), and a file's notes never change (midi_id is the md5 of its
-- bytes), so a group only ever grows and no other group changes.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['set_type', 'program', 'is_drum'],
        on_schema_change='fail',
    )
}}

select
    song_set_type as set_type,
    program,
    is_drum,
    sum(n_notes)::bigint as n_notes,
    sum(n_tracks)::bigint as n_tracks,
    count(*) as n_files,
    max(built_at) as built_at
from {{ ref('int_file_programs') }}
{% if is_incremental() %}
where (song_set_type, program, is_drum) in (
    select song_set_type, program, is_drum from {{ ref('int_file_programs') }} where built_at > {{ watermark() }}
)
{% endif %}
group by song_set_type, program, is_drum
