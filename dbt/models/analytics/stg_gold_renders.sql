-- Gold renders as loaded from the lake's manifests (gold.renders, written by Python's
-- load_renders stage): the only model that reads the gold source. It lives with the
-- analytics models because gold exists only after rendering, after silver is built.
{{ config(schema='staging', materialized='view') }}

select
    profile_id,  -- the render profile (plugins/dx7lake/gold/profiles.py): one row per profile, content and patch
    content_hash,
    patch_id,
    key,
    sha256,
    bytes,
    sample_rate,
    duration_s,
    peak,
    rms,
    bpm,
    notes,
    render_p,
    -- audio features (plugins/dx7lake/gold/features.py): null for renders of manifest parts written before them
    lufs,
    true_peak_dbtp,
    spectral_centroid_hz,
    spectral_bandwidth_hz,
    zcr,
    onset_count,
    mfcc,
    f0_hz,
    f0_error_cents
from {{ source('gold', 'renders') }}
