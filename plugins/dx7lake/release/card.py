"""The dataset card (``README.md`` of a release), its plots and its browser previews.

Plots are drawn with Pillow from the analytics marts the dashboards read (pitch, velocity,
phrase density per split) and from the release's own loudness figures per split and patch.
Previews are MP3s exported with pydub through the ffmpeg that imageio-ffmpeg's wheel ships.
"""

from __future__ import annotations

import io
import math
import warnings
from collections import defaultdict
from collections.abc import Sequence

import psycopg
from PIL import Image, ImageDraw

from ..lake import Lake
from . import examples as ex

PLOT_SIZE = (720, 300)
COLOURS = {"train": (52, 101, 164), "validation": (245, 121, 0), "test": (78, 154, 6)}
ANALYTICS = {
    "pitch": ("select set_type, pitch, n_notes from analytics.pitch_distribution", "MIDI pitch", "notes"),
    "velocity": ("select set_type, velocity, n_notes from analytics.velocity_distribution", "velocity", "notes"),
    "density": ("select set_type, n_notes, n_phrases from analytics.phrase_density", "notes per phrase", "phrases"),
}


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
            colour = COLOURS.get(name, (100, 100, 100))
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
                series[ex.SILVER_SPLIT.get(split, split)][float(x)] = float(n)
    except psycopg.errors.UndefinedTable:  # analytics not built on this warehouse
        return {}
    return dict(series)


def write_plots(lake: Lake, conn: psycopg.Connection, prefix: str, loudness: dict[str, list[float]]) -> list[str]:
    written = []
    for name, (sql, xlabel, ylabel) in ANALYTICS.items():
        series = _analytics(conn, sql)
        if series:
            lake.put(f"{prefix}/plots/{name}.png", bar_plot(f"{name} per split", series, xlabel, ylabel))
            written.append(f"plots/{name}.png")
    if loudness:
        bins = {
            group: _histogram([20 * math.log10(max(v, 1e-6)) for v in values], 2.0)
            for group, values in loudness.items()
        }
        lake.put(f"{prefix}/plots/loudness.png", bar_plot("RMS level (dBFS) per split/patch", bins, "dBFS", "renders"))
        written.append("plots/loudness.png")
    return written


def _histogram(values: Sequence[float], width: float) -> dict[float, float]:
    counts: dict[float, float] = defaultdict(float)
    for v in values:
        counts[width * (v // width)] += 1
    return dict(counts)


def write_previews(lake: Lake, prefix: str, samples: Sequence[tuple[str, bytes]]) -> list[str]:
    """MP3 previews of ``(key, flac)`` pairs, encoded by imageio-ffmpeg's own ffmpeg (never a system one)."""
    import imageio_ffmpeg
    import soundfile as sf

    with warnings.catch_warnings():  # pydub looks for a system ffmpeg on import: it is given the wheel's below
        warnings.simplefilter("ignore", RuntimeWarning)
        from pydub import AudioSegment

    AudioSegment.converter = imageio_ffmpeg.get_ffmpeg_exe()
    written = []
    for key, flac in samples:
        pcm, rate = sf.read(io.BytesIO(flac), dtype="int16")  # pydub would probe a file with ffprobe: not shipped
        segment = AudioSegment(pcm.tobytes(), sample_width=2, frame_rate=rate, channels=1)
        out = io.BytesIO()
        segment.export(out, format="mp3", bitrate="96k")
        rel = f"previews/{key}.mp3"
        lake.put(f"{prefix}/{rel}", out.getvalue())
        written.append(rel)
    return written


LOAD_SNIPPETS = """\
**Hugging Face `datasets`** (Parquet shards; `audio` decodes to an array):

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_dir="{root}/parquet")
ds["train"][0]["audio"]["array"]
```

**PyTorch streaming** (`pip install 'dx7lake[ml]'`; local folder or `s3://`):

```python
from torch.utils.data import DataLoader
from dx7lake.dataset import ReleaseDataset
ds = ReleaseDataset("{root}", split="train", sample_rate=16000, seed=0)
loader = DataLoader(ds, batch_size=None, num_workers=2)
```

**WebDataset** (tar shards of `.flac`, `.json`, `.mid` per example):

```python
import webdataset as wds
ds = wds.WebDataset("{root}/webdataset/train/train-{{00000..{last:05d}}}.tar").decode(wds.torch_audio)
```
"""


def card_text(
    manifest: dict,
    songs: list[tuple[str, str, str]],
    plots: list[str],
    previews: list[str],
    loudness: dict[str, list[float]],
) -> str:
    name = manifest["name"]
    splits = manifest["splits"]
    lines = [
        f"# dx7lake release `{name}`",
        "",
        "Phrases of MIDI songs (4-beat windows of one track, notes aligned to the beat) rendered as mono 16-bit FLAC "
        "with DX7 voices by Dexed, with the metadata a model needs beside the audio: where each phrase occurs "
        "(songs, tracks, General MIDI program and family, drum flag), the voice (id, name, parameters), "
        "the aligned notes (also as a MIDI file per example) and the audio's peak, RMS and duration.",
        "",
        "## How it was made",
        "",
        f"- pipeline: dx7lake {manifest['dx7lake_version']}, release format {manifest['format_version']}, "
        f"built {manifest['created_at']}",
        f"- split: by **{manifest['request']['split_by']}**"
        + (
            " (a phrase content belongs to one split: the earliest of the songs it occurs in, train first; "
            "no audio content crosses splits)"
            if manifest["request"]["split_by"] == "song"
            else " (NSynth-style: every render of a voice is in one split; "
            + ", ".join(f"`{p}` {s}" for p, s in sorted(manifest["patch_splits"].items()))
            + ")"
        ),
        "- voices (`patch_params`: dexed-py's decoding of the 156 VCED bytes, raw values: algorithm 0-31 "
        "is the panel's 1-32): " + ", ".join(f"`{p['patch_name']}` ({p['patch_id']})" for p in manifest["patches"]),
        f"- renders set aside: {len(manifest['skipped'])} (listed with their reason in `release.json`)",
        f"- corpus: {len(songs)} MIDI files; their md5 (= `midi_id`) and source key are in `corpus.tsv`",
        "",
        "## Contents",
        "",
        "| split | examples | hours | parquet shards | webdataset shards |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for split, info in splits.items():
        lines.append(
            f"| {split} | {info['examples']} | {info['duration_s'] / 3600:.3f} | {len(info['shards']['parquet'])} "
            f"| {len(info['shards']['webdataset'])} |"
        )
    total = sum(s["duration_s"] for s in splits.values())
    lines += ["", f"Total: {manifest['examples']} examples, {total / 3600:.3f} h of audio.", ""]
    if loudness:
        lines += ["## Loudness (RMS of the FLAC, dBFS)", "", "| split/voice | renders | median | min | max |"]
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for group, values in sorted(loudness.items()):
            db = sorted(20 * math.log10(max(v, 1e-6)) for v in values)
            lines.append(f"| {group} | {len(db)} | {db[len(db) // 2]:.1f} | {db[0]:.1f} | {db[-1]:.1f} |")
        lines.append("")
    if plots:
        lines += ["## Distributions", ""] + [f"![{p}]({p})" for p in plots] + [""]
    if previews:
        lines += ["## Listen", ""] + [f"- [{p.split('/')[-1]}]({p})" for p in previews] + [""]
    last = len(splits["train"]["shards"]["webdataset"]) - 1
    lines += [
        "## Loading",
        "",
        LOAD_SNIPPETS.format(root=f"releases/{name}", last=max(last, 0)),
        "## Licence and attribution",
        "",
        "- MIDI: the Lakh MIDI Dataset (Colin Raffel) is released under CC-BY 4.0; a release built from it must "
        "credit it. Other corpora keep their own licences (the demo's Bach chorales come from music21's corpus).",
        "- Audio rendered with dexed-py, the Dexed DX7 emulation, licensed GPL-3.0; the renders are its output.",
        "- dx7lake itself is Apache-2.0.",
        "",
    ]
    return "\n".join(lines)


def write_card(lake: Lake, conn: psycopg.Connection, prefix: str, manifest: dict, samples=()) -> dict:
    """README.md, corpus.tsv, plots and previews of a release; returns what was written."""
    import pyarrow.parquet as pq

    midi_ids: set[str] = set()
    loudness: dict[str, list[float]] = defaultdict(list)
    names = {p["patch_id"]: p["patch_name"] for p in manifest["patches"]}
    for split, info in manifest["splits"].items():
        for shard in info["shards"]["parquet"]:
            table = pq.read_table(
                io.BytesIO(lake.get(f"{prefix}/{shard['path']}")), columns=["midi_ids", "patch_id", "rms"]
            )
            for ids, patch_id, rms in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
                midi_ids.update(ids)
                loudness[f"{split}/{names[patch_id]}"].append(rms)
    songs = ex.songs(conn, midi_ids)
    tsv = "midi_id\tsource_key\tsplit\n" + "".join("\t".join(song) + "\n" for song in songs)
    lake.put(f"{prefix}/corpus.tsv", tsv.encode())
    plots = write_plots(lake, conn, prefix, loudness)
    previews = write_previews(lake, prefix, samples)
    lake.put(f"{prefix}/README.md", card_text(manifest, songs, plots, previews, loudness).encode())
    return {"readme": "README.md", "corpus": "corpus.tsv", "plots": plots, "previews": previews, "songs": len(songs)}
