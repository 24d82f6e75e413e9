"""Extract benchmark: the whole bronze extract against a plain mido reading of the same files.

The corpus is music21's real MIDI test files, each copied many times with a distinct
trailing alien chunk (a different md5, the same music), written to a temporary folder.
The baseline only parses every file with ``mido.MidiFile``; the extract also hashes,
pairs notes, maps tempo, builds the rows and writes the parquet parts and their index.

Two comparisons: in-process (imports and compiled code warm on both sides), and whole
process on 5,000 files, as a user meets it: ``dx7lake extract`` as a new process (its
imports, numba's cached machine code, the work) against a new Python process that reads
the same files with mido.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COPIES = 40
ROUNDS = 3
WHOLE_PROCESS_FILES = 5000
MIDO_SCRIPT = "import mido, pathlib, sys\nfor p in sorted(pathlib.Path(sys.argv[1]).rglob('*.mid')): mido.MidiFile(p)"


def _corpus(folder: Path, copies: int = COPIES) -> list[Path]:
    import music21

    sources = sorted((Path(music21.__file__).parent / "midi" / "testPrimitive").glob("*.mid"))
    paths = []
    for copy in range(copies):
        for src in sources:
            path = folder / f"c{copy:03d}" / src.name
            path.parent.mkdir(parents=True, exist_ok=True)
            marker = copy.to_bytes(4, "big")
            path.write_bytes(src.read_bytes() + b"XTRA" + len(marker).to_bytes(4, "big") + marker)
            paths.append(path)
    return paths


def _timed_process(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys, as the kernel accounts the child) of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def whole_process(tmp: Path) -> dict:
    """``dx7lake extract`` and a mido reading, each as a new process, on the same 5,000 files."""
    import music21

    per_copy = len(list((Path(music21.__file__).parent / "midi" / "testPrimitive").glob("*.mid")))
    folder = tmp / "whole"
    paths = _corpus(folder, -(-WHOLE_PROCESS_FILES // per_copy))[:WHOLE_PROCESS_FILES]
    for extra in sorted(folder.rglob("*.mid"))[len(paths) :]:
        extra.unlink()
    cli = str(Path(sys.executable).with_name("dx7lake"))
    home = tmp / "whole-home"
    _timed_process([cli, "extract", "--home", str(home), "--source", str(folder), "--lake", str(tmp / "warm-whole")])
    ours_runs, mido_runs = [], []
    for attempt in range(ROUNDS):  # interleaved, best of each figure
        mido_runs.append(_timed_process([sys.executable, "-c", MIDO_SCRIPT, str(folder)]))
        lake = str(tmp / f"whole-lake{attempt}")
        ours_runs.append(_timed_process([cli, "extract", "--home", str(home), "--source", str(folder), "--lake", lake]))
    ours = [min(figure) for figure in zip(*ours_runs, strict=True)]
    mido = [min(figure) for figure in zip(*mido_runs, strict=True)]
    startup = _timed_process([cli, "--help"])
    return {
        "files": len(paths),
        "dx7lake_extract_wall_s": round(ours[0], 2),
        "dx7lake_extract_cpu_s": round(ours[1], 2),
        "mido_process_wall_s": round(mido[0], 2),
        "mido_process_cpu_s": round(mido[1], 2),
        "ratio_wall": round(mido[0] / ours[0], 1),
        "ratio_cpu": round(mido[1] / ours[1], 1),
        "cli_help_wall_s": round(startup[0], 2),
    }


def run() -> dict:
    import mido

    from dx7lake.bronze import extract
    from dx7lake.lake import LocalLake

    with tempfile.TemporaryDirectory(prefix="dx7lake-bench-") as tmp:
        folder = Path(tmp) / "midi"
        paths = _corpus(folder)
        # load the compiled scanner and every import before timing, on both sides
        warm = Path(tmp) / "warm"
        warm.mkdir()
        (warm / "a.mid").write_bytes(paths[0].read_bytes())
        extract(str(warm), LocalLake(Path(tmp) / "warm-lake"))
        mido.MidiFile(paths[0])

        mido_s = ours_s = float("inf")
        for attempt in range(ROUNDS):  # interleaved, best of each: robust to a busy machine
            started = time.perf_counter()
            for path in paths:
                mido.MidiFile(path)
            mido_s = min(mido_s, time.perf_counter() - started)

            started = time.perf_counter()
            stats = extract(str(folder), LocalLake(Path(tmp) / f"lake{attempt}"))
            ours_s = min(ours_s, time.perf_counter() - started)
        whole = whole_process(Path(tmp))
    assert stats.files_extracted == len(paths), stats
    fast, slow = len(paths) / ours_s, len(paths) / mido_s
    return {
        "name": "extract",
        "files_per_s": round(fast, 1),
        "notes_per_s": round(stats.notes / ours_s),
        "files": len(paths),
        "notes": stats.notes,
        "rounds": ROUNDS,
        "baseline": {"name": "mido.MidiFile reading the same files", "files_per_s": round(slow, 1)},
        "ratio": round(fast / slow, 1),
        "whole_process": whole,
    }
