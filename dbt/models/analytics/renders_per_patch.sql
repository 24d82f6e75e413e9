-- What gold holds per voice: renders, bytes, audio hours and levels.
select
    patch_id,
    count(*) as n_renders,
    sum(bytes) as total_bytes,
    sum(duration_s) / 3600.0 as audio_hours,
    avg(peak) as mean_peak,
    avg(rms) as mean_rms
from {{ ref('stg_gold_renders') }}
group by patch_id
