"""Plots of a dataset's shape, as PNGs drawn with Pillow: the dataset card's and the phrase
browser's ``/stats`` page's, from one code path.

Pitch, velocity and phrase density per split come from the analytics marts the Metabase
dashboards read; loudness per split and voice from RMS figures the caller gathers (the
release's examples for the card, ``gold.renders`` for the browser).
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence

import psycopg
from PIL import Image, ImageDraw

from .examples import SILVER_SPLIT

PLOT_SIZE = (720, 300)
COLOURS = {"train": (52, 101, 164), "validation": (245, 121, 0), "test": (78, 154, 6)}
ANALYTICS = {
    "pitch": ("select set_type, pitch, n_notes from analytics.pitch_distribution", "MIDI pitch", "notes"),
    "velocity": ("select set_type, velocity, n_notes from analytics.velocity_distribution", "velocity", "notes"),
    "density": ("select set_type, n_notes, n_phrases from analytics.phrase_density", "notes per phrase", "phrases"),
}


def _colour(name: str, names: list[str]) -> tuple[int, int, int]:
    """The split's colour (``split`` or ``split/voice``), lighter for each further voice of that split."""
    split = name.split("/")[0]
    base = COLOURS.get(split, (100, 100, 100))
    shade = [n for n in names if n.split("/")[0] == split].index(name) * 0.3
    return tuple(round(c + (255 - c) * min(shade, 0.75)) for c in base)


def bar_plot(title: str, series: dict[str, dict[float, float]], xlabel: str, ylabel: str) -> bytes:
    """A PNG of one normalised histogram per series, side by side in each bin."""
    width, height = PLOT_SIZE
    left, right, top, bottom = 50, 10, 30, 40
    image = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), title, fill="black")
    xs = sorted({x for values in series.values() for x in values})
    if xs:
        shares = {
            name: {x: v / (sum(values.values()) or 1) for x, v in values.items()} for name, values in series.items()
        }
        peak = max((s for values in shares.values() for s in values.values()), default=1) or 1
        lo, hi = xs[0], xs[-1]
        span = (hi - lo) or 1
        plot_w, plot_h = width - left - right, height - top - bottom
        bar = max(1.0, plot_w / (span + 1) / max(1, len(series)))
        for i, (name, values) in enumerate(sorted(shares.items())):
            colour = _colour(name, sorted(shares))
            for x, share in values.items():
                x0 = left + (x - lo) / (span + 1) * plot_w + i * bar
                draw.rectangle([x0, top + plot_h * (1 - share / peak), x0 + bar - 1, top + plot_h], fill=colour)
            draw.text((width - right - 90, top + 14 * i), name, fill=colour)
        draw.line([left, top + plot_h, width - right, top + plot_h], fill="black")
        draw.text((left, height - bottom + 4), f"{lo:g}", fill="black")
        draw.text((width - right - 40, height - bottom + 4), f"{hi:g}", fill="black")
    draw.text((width // 2 - 40, height - 18), xlabel, fill="black")
    draw.text((4, top), f"share of {ylabel}", fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _analytics(conn: psycopg.Connection, sql: str) -> dict[str, dict[float, float]]:
    series: dict[str, dict[float, float]] = defaultdict(dict)
    try:
        with conn.transaction():
            for split, x, n in conn.execute(sql).fetchall():
                series[SILVER_SPLIT.get(split, split)][float(x)] = float(n)
    except psycopg.errors.UndefinedTable:  # analytics not built on this warehouse
        return {}
    return dict(series)


def _histogram(values: Sequence[float], width: float) -> dict[float, float]:
    counts: dict[float, float] = defaultdict(float)
    for v in values:
        counts[width * (v // width)] += 1
    return dict(counts)


def analytics_plots(conn: psycopg.Connection) -> dict[str, bytes]:
    """``name`` -> PNG of each analytics mart's distribution per split (none before the marts exist)."""
    plots = {}
    for name, (sql, xlabel, ylabel) in ANALYTICS.items():
        series = _analytics(conn, sql)
        if series:
            plots[name] = bar_plot(f"{name} per split", series, xlabel, ylabel)
    return plots


LOUDNESS_BIN_DB = 2.0


def loudness_bins(values: Sequence[float]) -> dict[float, float]:
    """Render counts per ``LOUDNESS_BIN_DB`` bin of RMS level (dBFS) of linear RMS ``values``."""
    return _histogram([dbfs(v) for v in values], LOUDNESS_BIN_DB)


def loudness_plot(bins: dict[str, dict[float, float]]) -> bytes:
    """Histograms of :func:`loudness_bins` per ``split/voice`` group."""
    return bar_plot("RMS level (dBFS) per split/patch", bins, "dBFS", "renders")


def dbfs(rms: float) -> float:
    return 20 * math.log10(max(rms, 1e-6))
