-- The raw load's bookkeeping (ops.load_stats, written by Python in the same transaction
-- as the rows): the only model that reads it; int_phrases dates partitions by it.
select
    run_id,
    p,
    rows,
    bytes,
    seconds,
    loaded_at
from {{ source('ops', 'load_stats') }}
