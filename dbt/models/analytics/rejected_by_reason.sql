-- Phrases and contents set aside before rendering, per render rule: what the run's summary
-- and the Metabase card report. A table over int_rejected_contents (rejected contents only,
-- a small share of all: 0.5% of the phrases of the 170 real-world files), recomputed whole:
-- no run reads the phrases of the lake for it.
select
    reason,
    sum(n_phrases)::bigint as n_phrases,
    count(*)::bigint as n_contents
from {{ ref('int_rejected_contents') }}
group by reason
