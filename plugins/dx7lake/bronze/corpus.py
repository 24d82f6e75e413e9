"""Demo corpus: Bach chorales from music21's bundled corpus, written out as MIDI.

music21 ships its corpus inside the wheel, so the demo and the tests run on real music
with no download. Files are cached: a chorale already in the landing folder is kept.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..config import DEFAULT_DEMO_LIMIT

log = logging.getLogger(__name__)


def chorale_paths(limit: int | None) -> list[Path]:
    """The first ``limit`` Bach works of music21's corpus, in a stable order."""
    from music21 import corpus

    paths = sorted(Path(p) for p in corpus.getComposer("bach") if str(p).endswith((".mxl", ".xml", ".krn")))
    return paths if limit is None else paths[:limit]


def write_demo_corpus(landing: str | os.PathLike[str], limit: int | None = DEFAULT_DEMO_LIMIT) -> dict:
    """Write chorales as ``bach/<name>.mid`` under ``landing``; returns counts."""
    from music21 import corpus

    out_dir = Path(landing) / "bach"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = cached = failed = 0
    for path in chorale_paths(limit):
        target = out_dir / f"{path.stem}.mid"
        if target.exists():
            cached += 1
            continue
        try:
            score = corpus.parse(str(path))
            tmp = target.with_suffix(".tmp")
            score.write("midi", fp=str(tmp))
            tmp.replace(target)
            written += 1
        except Exception as err:  # a score music21 cannot export is skipped, not fatal
            log.warning("could not export %s: %s", path.name, err)
            failed += 1
    return {"landing": str(out_dir), "written": written, "cached": cached, "failed": failed}
