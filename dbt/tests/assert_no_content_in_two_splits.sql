-- No leakage: a phrase content may appear in one split only. Over every phrase of the contents
-- the latest build wrote (an untouched content's phrases are as the last check left them); the
-- whole table with var full_tests.
{% set touched = new_keys_only(ref('phrases'), ['content_hash']) %}
select content_hash, count(distinct set_type) as splits
from {{ ref('phrases') }}
{% if touched %} where {{ touched }} {% endif %}
group by content_hash
having count(distinct set_type) > 1
