"""The dataset card (``README.md`` of a release), its plots and its browser previews.

Plots (:mod:`.plots`, the browser's ``/stats`` draws the same) come from the analytics marts
the dashboards read (pitch, velocity, phrase density per split) and from the release's own
loudness figures per split and patch.
Previews are the MP3s of :mod:`..gold.preview`, which the browser serves too.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence

import psycopg

from ..gold.preview import PREVIEW_FORMAT, preview
from ..lake import Lake
from . import examples as ex
from .plots import analytics_plots, dbfs, loudness_bins, loudness_plot


def write_plots(lake: Lake, conn: psycopg.Connection, prefix: str, loudness: dict[str, list[float]]) -> list[str]:
    """The analytics marts' plots and the release's loudness plot under ``plots/``."""
    plots = analytics_plots(conn)
    if loudness:
        plots["loudness"] = loudness_plot({group: loudness_bins(values) for group, values in loudness.items()})
    for name, png in plots.items():
        lake.put(f"{prefix}/plots/{name}.png", png)
    return [f"plots/{name}.png" for name in plots]


def write_previews(lake: Lake, prefix: str, samples: Sequence[tuple[str, bytes]]) -> list[str]:
    """MP3 previews of ``(key, flac)`` pairs (:func:`..gold.preview.preview`, as the browser serves them)."""
    written = []
    for key, flac in samples:
        rel = f"previews/{key}.{PREVIEW_FORMAT}"
        lake.put(f"{prefix}/{rel}", preview(flac))
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
            db = sorted(dbfs(v) for v in values)
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
