-- A warning, not an error: real music legitimately breaks the render rules now and then
-- (zero-length notes, 265-note windows), but when more than var max_rejected_share of the
-- phrases are set aside, the vars or the corpus deserve a look.
{{ config(severity='warn') }}

with counts as (
    select
        (select count(*) from {{ ref('rejected_phrases') }}) as rejected,
        (select count(*) from {{ ref('int_phrases') }}) as phrases
)

select rejected, phrases
from counts
where rejected > {{ var('max_rejected_share') }} * phrases
