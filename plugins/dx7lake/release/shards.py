"""Shard formats: Parquet for Hugging Face ``datasets`` and tar for WebDataset, same examples.

The Parquet schema carries Hugging Face's feature metadata for the ``audio`` column only
(``{"_type": "Audio"}``): ``datasets`` reads it from the file and decodes ``audio`` as
audio; every other column's feature is inferred from its Arrow type.
"""

from __future__ import annotations

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq

from ..gold.features import FEATURE_COLUMNS
from ..gold.render import MANIFEST_SCHEMA, NOTE_STRUCT

AUDIO_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_METADATA = {b"huggingface": json.dumps({"info": {"features": {"audio": {"_type": "Audio"}}}}).encode()}
EXAMPLE_SCHEMA = pa.schema(
    [
        ("audio", AUDIO_STRUCT),
        ("key", pa.string()),
        ("split", pa.string()),
        ("content_hash", pa.string()),
        ("patch_id", pa.string()),
        ("patch_name", pa.string()),
        ("patch_params", pa.string()),  # JSON, as dexed-py decodes the voice
        ("phrase_ids", pa.list_(pa.string())),
        ("midi_ids", pa.list_(pa.string())),
        ("track_ids", pa.list_(pa.string())),
        ("programs", pa.list_(pa.int16())),
        ("instrument_families", pa.list_(pa.string())),
        ("drum_free", pa.bool_()),
        ("notes", pa.list_(NOTE_STRUCT)),
        ("bpm", pa.float64()),
        ("sample_rate", pa.int32()),
        ("duration_s", pa.float64()),
        ("peak", pa.float64()),
        ("rms", pa.float64()),
        ("gain", pa.float64()),
        ("sha256", pa.string()),
        ("engine", pa.string()),
        ("effects", pa.string()),
        ("flac_level", pa.int32()),
        ("flac_encoder", pa.string()),
        ("profile_id", pa.string()),  # the render profile (gold/profiles.py) and its canonical form
        ("profile", pa.string()),
        # the render's audio features, as gold computed them (null for renders from before them)
        *[(name, MANIFEST_SCHEMA.field(name).type) for name in FEATURE_COLUMNS],
        ("gold_key", pa.string()),
        ("midi", pa.binary()),
    ],
    metadata=HF_METADATA,
)
META_COLUMNS = [n for n in EXAMPLE_SCHEMA.names if n not in ("audio", "midi")]
ROW_GROUP = 256  # examples per row group: a reader's unit of memory, small for audio


def parquet_shard(examples: list[dict]) -> bytes:
    rows = [{"audio": {"bytes": e["flac"], "path": f"{e['key']}.flac"}, **e} for e in examples]
    table = pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP, use_dictionary=["split", "patch_id"])
    return out.getvalue()


def tar_shard(examples: list[dict]) -> bytes:
    """WebDataset: ``<key>.flac``, ``<key>.json`` (metadata) and ``<key>.mid`` per example, in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in examples:
            meta = {k: e[k] for k in META_COLUMNS}
            for suffix, data in (
                ("flac", e["flac"]),
                ("json", json.dumps(meta, sort_keys=True).encode()),
                ("mid", e["midi"]),
            ):
                info = tarfile.TarInfo(f"{e['key']}.{suffix}")
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
