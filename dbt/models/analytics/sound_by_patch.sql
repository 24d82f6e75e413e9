-- The sound of the dataset per render profile and voice: loudness, true peak, brightness, the tuning of
-- single-note renders and the near misses of the silence check (renders under the
-- near_silent_lufs var, default -50 LUFS, or under the -70 LUFS gate). Renders whose
-- manifest part predates the audio features (null centroid) count only in n_renders.
select
    renders.profile_id,
    coalesce(max(profiles.name), renders.profile_id) as profile_name,
    renders.patch_id,
    count(*) as n_renders,
    count(spectral_centroid_hz) as n_with_features,
    percentile_cont(0.5) within group (order by lufs) as median_lufs,
    percentile_cont(0.1) within group (order by lufs) as p10_lufs,
    max(true_peak_dbtp) as max_true_peak_dbtp,
    percentile_cont(0.5) within group (order by spectral_centroid_hz) as median_centroid_hz,
    avg(spectral_bandwidth_hz) as mean_bandwidth_hz,
    count(f0_hz) as n_f0,
    percentile_cont(0.5) within group (order by abs(f0_error_cents)) as median_abs_f0_error_cents,
    count(*) filter (
        where spectral_centroid_hz is not null and (lufs is null or lufs < {{ var('near_silent_lufs', -50) }})
    ) as n_near_silent
from {{ ref('stg_gold_renders') }} as renders
left join {{ source('gold', 'profiles') }} as profiles using (profile_id)
group by renders.profile_id, renders.patch_id
