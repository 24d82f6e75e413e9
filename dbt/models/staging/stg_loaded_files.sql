-- The files in raw.detailed_notes, from the load's ledger (raw.bronze_parts): the only model
-- that reads it. int_phrases and track_summary take the files loaded since they last saw them.
select
    files.midi_id,
    parts.p as bronze_p,
    parts.part,
    parts.run_id,
    parts.loaded_at
from {{ source('raw', 'bronze_parts') }} as parts
cross join lateral unnest(parts.midi_ids) as files (midi_id)
