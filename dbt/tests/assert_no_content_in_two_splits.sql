-- No leakage: a phrase content may appear in one split only.
select content_hash, count(distinct set_type) as splits
from {{ ref('phrases') }}
group by content_hash
having count(distinct set_type) > 1
