"""The line a benchmark prints when it times one way against a baseline, same process."""

from __future__ import annotations


def against_baseline(name: str, seconds: float, baseline: str, baseline_seconds: float, **figures) -> dict:
    """``seconds`` and the baseline's, with their ratio (the figure that travels between
    machines), after the benchmark's own ``figures``."""
    return {
        "name": name,
        **figures,
        "seconds": round(seconds, 4),
        "baseline": {"name": baseline, "seconds": round(baseline_seconds, 4)},
        "ratio": round(seconds / baseline_seconds, 4),
    }
