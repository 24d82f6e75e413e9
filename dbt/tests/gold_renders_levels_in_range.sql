-- A gold render's manifest figures must describe audible, unclipped, non-empty audio:
-- peak in (0, 1], rms in (0, peak], a positive duration and size (of the renders the latest
-- loading run loaded; of all with var full_tests).
{% set new_rows = new_rows_only(source('gold', 'renders')) %}
select key, peak, rms, duration_s, bytes
from {{ source('gold', 'renders') }}
where {% if new_rows %} ({{ new_rows }}) and {% endif %} (
    not (peak > 0 and peak <= 1)
    or not (rms > 0 and rms <= peak)
    or not (duration_s > 0)
    or not (bytes > 0)
)
