-- What gold holds per render profile and voice: renders, bytes, audio hours and levels.
select
    renders.profile_id,
    coalesce(max(profiles.name), renders.profile_id) as profile_name,
    renders.patch_id,
    count(*) as n_renders,
    sum(renders.bytes) as total_bytes,
    sum(renders.duration_s) / 3600.0 as audio_hours,
    avg(renders.peak) as mean_peak,
    avg(renders.rms) as mean_rms
from {{ ref('stg_gold_renders') }} as renders
left join {{ source('gold', 'profiles') }} as profiles using (profile_id)
group by renders.profile_id, renders.patch_id
