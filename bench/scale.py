"""The pipeline at scale on a Lakh-like corpus, and what a rerun after 1% more files costs.

The corpus is made from real multitrack MIDI files (a folder such as the project's shared
real-world corpus): file ``i`` is source ``i mod S`` transposed (drums kept), re-tempoed
and with its tracks shuffled by mido, so every file has a new md5 and its pitched phrases
new contents, as Lakh's many arrangements of one song do. The run then goes stage by stage,
each stage in its own process as an Airflow task would (so its peak RSS is its own): a full
run on N files, then a rerun after adding 1% more. Printed per stage: rows, seconds (its
work, then its writes flushed to disk, so that no stage pays for the one before: the flush
alone is ``flush_seconds``), seconds per million notes of the run, peak RSS, CPU use; and
the rerun ratio (rerun seconds / full-run seconds, over the stages the DAG runs).

``python -m bench.scale --files 400 --source DIR`` (``make bench-scale N=400``); ``--stages
extract,load,dbt,analytics`` runs the stages up to silver and the marts only (no render: what
dbt costs, in minutes rather than hours on a small machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dx7lake.config import DEFAULT_PATCHES

STAGES = ("extract", "load", "dbt", "plan", "render", "load_renders", "validate", "analytics")
ROOT = Path(__file__).resolve().parents[1]  # the repository: ``bench`` is importable from here
DEFAULT_SOURCE = ROOT / ".." / "shared" / "corpus" / "realworld"
TRANSPOSE = (1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7)
DRUMS = 9


def variant(data: bytes, i: int, n_sources: int) -> bytes | None:
    """File ``i`` of the corpus from one source's bytes (None when mido cannot read them)."""
    import io

    import mido

    try:
        mid = mido.MidiFile(file=io.BytesIO(data), clip=True)
    except Exception:  # a broken source stays broken: it is written once, as it is
        return None
    v = i // n_sources
    rng = random.Random(i)
    shift, tempo = TRANSPOSE[v % len(TRANSPOSE)], rng.uniform(0.8, 1.25)
    for track in mid.tracks:
        for msg in track:
            if msg.type in ("note_on", "note_off") and msg.channel != DRUMS:
                msg.note = min(127, max(0, msg.note + shift + 12 * (v // len(TRANSPOSE) % 2)))
            elif msg.type == "set_tempo":
                msg.tempo = max(1, min(0xFFFFFF, round(msg.tempo / tempo)))
    if mid.type == 1 and len(mid.tracks) > 2:
        rest = mid.tracks[1:]
        rng.shuffle(rest)
        mid.tracks[1:] = rest
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def make_corpus(source: Path, out: Path, first: int, count: int) -> int:
    """Write files ``first`` .. ``first + count - 1`` of the corpus into ``out``; returns how many."""
    sources = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not sources:
        raise ValueError(f"no MIDI files under {source}")
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(first, first + count):
        src = sources[i % len(sources)]
        target = out / f"{i:06d}_{src.stem}.mid"
        if target.exists():  # the same i always gives the same bytes: a kept corpus is reused
            written += 1
            continue
        data = variant(src.read_bytes(), i, len(sources))
        if data is None and i >= len(sources):
            continue
        target.write_bytes(data if data is not None else src.read_bytes())
        written += 1
    return written


def _link(corpus: Path, landing: Path, numbers: range) -> None:
    """Files ``numbers`` of the corpus into the landing folder (hard links: no copy)."""
    landing.mkdir(parents=True, exist_ok=True)
    for path in corpus.iterdir():
        if int(path.name[:6]) in numbers and not (landing / path.name).exists():
            (landing / path.name).hardlink_to(path)


def stage(name: str, home: str, patches: str, run_id: str) -> dict:
    """One stage, in this process; the figures of its work."""
    from dx7lake import stages
    from dx7lake.config import load_settings
    from dx7lake.warehouse.load import scalar
    from dx7lake.warehouse.postgres import connect
    from dx7lake.warehouse.transform import run_dbt

    settings = load_settings(home)
    if name == "extract":
        r = stages.extract(settings)
        return {"rows": r["notes"], "files": r["files_extracted"], "seconds": r["seconds"]}
    if name == "load":
        started = time.time()
        loads = [stages.load_partition(settings, p, run_id) for p in stages.bronze_partitions(settings)]
        done = stages.finish_load(settings, loads)  # the DAG's `loaded` task: the raw tables vacuumed
        return {"rows": done["rows"], "seconds": round(time.time() - started, 3), "settle_s": done["seconds"]}
    if name == "dbt":
        started = time.time()
        run_dbt(["build", "--exclude", "path:models/analytics", "--quiet"], settings=settings)
        with connect(settings) as conn:
            rows = scalar(conn, "select count(*) from silver.phrases")
        return {"rows": rows, "seconds": round(time.time() - started, 3)}
    if name == "plan":
        r = stages.plan_render(settings, patches)
        (Path(home) / "plan.json").write_text(json.dumps(r["partitions"]))
        return {"rows": r["contents_looked_at"], "partitions": len(r["partitions"]), "seconds": r["seconds"]}
    if name == "render":
        started = time.time()
        results = [
            stages.render_partition(settings, p, patches) for p in json.loads((Path(home) / "plan.json").read_text())
        ]
        return {
            "rows": sum(r["rendered"] for r in results),
            "seconds": round(time.time() - started, 3),
            "pool_cpu_seconds": sum(r["pool_cpu_seconds"] for r in results),
        }
    if name == "load_renders":
        r = stages.load_renders(settings, run_id)
        return {"rows": r["rows_loaded"], "parts": r["parts_loaded"], "seconds": r["seconds"]}
    if name == "validate":
        r = stages.run_validation(settings, patches, run_id)
        checks = {c["check"]: c["seconds"] for c in r["checks"]}
        figures = {"rows": r["checked"], "passed": r["passed"], "audited": r["audited"], "checks_s": checks}
        return figures | {"seconds": r["seconds"]}
    if name == "analytics":
        r = stages.build_analytics(settings)
        return {"rows": 0, "seconds": r["seconds"]}
    raise ValueError(name)


def _in_process(name: str, home: str, patches: str, run_id: str) -> dict:
    """``stage`` in a fresh process (as an Airflow task runs), with its peak RSS and CPU time,
    then its writes flushed (``_flush``), counted in its seconds."""
    cmd = [sys.executable, "-m", "bench.scale", "--stage", name, "--home", home, "--patches", patches]
    started = time.perf_counter()
    out = subprocess.run([*cmd, "--run-id", run_id], check=True, capture_output=True, text=True, cwd=ROOT).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    result["flush_seconds"] = _flush(home)
    result["seconds"] = round(result["seconds"] + result["flush_seconds"], 3)
    return result


def _flush(home: str) -> float:
    """Seconds to put what a stage wrote on disk: a Postgres checkpoint (its dirty buffers to
    the kernel), then the kernel's dirty pages to disk. Each stage pays for its own writes:
    pages left to the kernel's writeback are written during the next stage (0.8 GB of them,
    from a server's shutdown after a load of 3.4 M notes, slowed the next dbt build from
    45.9 to 68.2 s on this machine's disk)."""
    from dx7lake.config import load_settings
    from dx7lake.warehouse.postgres import connect

    started = time.perf_counter()
    with connect(load_settings(home), autocommit=True) as conn:
        conn.execute("checkpoint")
    os.sync()
    return round(time.perf_counter() - started, 3)


def _child_main(args: argparse.Namespace) -> None:
    result = stage(args.stage, args.home, args.patches, args.run_id)
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    result["peak_rss_mib"] = round(max(own.ru_maxrss, kids.ru_maxrss) / 1024, 1)
    # render's pool workers belong to a forkserver that outlives this measure: they report their own
    own_cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    result["cpu_seconds"] = round(own_cpu + result.pop("pool_cpu_seconds", 0.0), 3)
    print(json.dumps(result), flush=True)


def pipeline(home: str, patches: str, run_id: str, names: tuple[str, ...] = STAGES) -> dict[str, dict]:
    return {name: _in_process(name, home, patches, run_id) for name in names}


def _report(label: str, stages: dict[str, dict], notes: int) -> dict:
    """Per stage: its seconds are its work and the flush of its writes (``flush_seconds``)."""
    total = sum(s["seconds"] for s in stages.values())
    rows = {}
    for name, s in stages.items():
        rows[name] = {
            "rows": s["rows"],
            "seconds": s["seconds"],
            "flush_seconds": s["flush_seconds"],
            "s_per_million_notes": round(s["seconds"] / (notes / 1e6), 2) if notes else None,
            "peak_rss_mib": s["peak_rss_mib"],
            "cpu_seconds": s["cpu_seconds"],
            "cpu_util": round(s["cpu_seconds"] / s["process_seconds"], 2) if s["process_seconds"] else None,
        } | ({"checks_s": s["checks_s"]} if "checks_s" in s else {})
    return {"run": label, "notes": notes, "seconds": round(total, 3), "stages": rows}


def run(
    files: int = 40,
    source: str | None = None,
    patches: str = DEFAULT_PATCHES,
    keep: str | None = None,
    corpus: str | None = None,
    names: tuple[str, ...] = STAGES,
) -> dict:
    """Full run on ``files`` files, then a rerun after adding 1% more (at least one).
    ``corpus`` keeps the generated files there for the next run (they take a while)."""
    from dx7lake.config import load_settings
    from dx7lake.warehouse.postgres import stop_embedded

    src = Path(source) if source else DEFAULT_SOURCE
    if not src.is_dir():
        return {"bench": "scale", "skipped": f"no MIDI folder at {src} (give --source)"}
    added = max(1, math.ceil(files / 100))
    with tempfile.TemporaryDirectory(prefix="dx7lake-scale-") as tmp:
        home = str(Path(keep).resolve()) if keep else tmp
        landing = Path(load_settings(home).source)
        made = Path(corpus) if corpus else Path(tmp) / "corpus"
        try:
            n = make_corpus(src, made, 0, files)
            _link(made, landing, range(files))
            full = pipeline(home, patches, "full", names)
            make_corpus(src, made, files, added)
            _link(made, landing, range(files, files + added))
            rerun = pipeline(home, patches, "rerun", names)
        finally:
            stop_embedded(load_settings(home))
    first, second = _report("full", full, full["extract"]["rows"]), _report("rerun", rerun, rerun["extract"]["rows"])
    return {
        "bench": "scale",
        "files": n,
        "files_added": added,
        "patches": patches,
        "full": first,
        "rerun": second,
        "rerun_ratio": round(second["seconds"] / first["seconds"], 4),
    } | (
        {"validation_passed": full["validate"]["passed"] and rerun["validate"]["passed"]} if "validate" in names else {}
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--source", default=None, help="folder of real MIDI files to vary")
    parser.add_argument("--patches", default=DEFAULT_PATCHES)
    parser.add_argument("--keep", default=None, help="run in this home and keep it (default: a temporary one)")
    parser.add_argument("--corpus", default=None, help="keep the generated corpus in this folder, to reuse")
    parser.add_argument("--stages", default=",".join(STAGES), help="the stages to run, in order (default: all)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        _child_main(args)
        return 0
    names = tuple(name for name in STAGES if name in args.stages.split(","))
    print(json.dumps(run(args.files, args.source, args.patches, args.keep, args.corpus, names)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
