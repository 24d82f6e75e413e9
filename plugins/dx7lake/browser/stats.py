"""The ``/stats`` page's plots: the dataset's shape as the release card draws it.

The same code (:mod:`..release.plots`) and the same sources: the analytics marts the
dashboards read for pitch, velocity and phrase density per split, and the RMS levels of
every render in ``gold.renders`` per split and voice, binned in SQL (the table can hold
millions of rows; only the bins travel).
"""

from __future__ import annotations

import psycopg

from ..release.examples import SILVER_SPLIT
from ..release.plots import LOUDNESS_BIN_DB, analytics_plots, loudness_plot

# The content's split is silver's (a content belongs to one split), as a song-split release's.
LOUDNESS_BINS = """
select c.set_type, g.patch_id,
       %(width)s * floor(20 * log(greatest(g.rms, 1e-6)) / %(width)s) as bin, count(*) as n
from gold.renders g
join silver.phrase_contents c using (content_hash)
group by 1, 2, 3
"""


def stats_plots(url: str, patch_names: dict[str, str]) -> dict[str, bytes]:
    """``name`` -> PNG: the analytics marts' plots (once built) and loudness per split/voice."""
    with psycopg.connect(url) as conn:
        plots = analytics_plots(conn)
        bins: dict[str, dict[float, float]] = {}
        for split, patch_id, level, n in conn.execute(LOUDNESS_BINS, {"width": LOUDNESS_BIN_DB}):
            group = f"{SILVER_SPLIT.get(split, split)}/{patch_names.get(patch_id, patch_id)}"
            bins.setdefault(group, {})[float(level)] = float(n)
    if bins:
        plots["loudness"] = loudness_plot(bins)
    return plots
