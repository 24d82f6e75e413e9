"""Stream a release into PyTorch: shards, not objects, from a local folder or ``s3://``.

:class:`ReleaseDataset` is a ``torch.utils.data.IterableDataset`` over one split's Parquet
shards. Each epoch orders the shards by a seeded shuffle (the same order in every worker
and rank), gives each rank every ``world_size``-th shard and each DataLoader worker every
``num_workers``-th of those, so an epoch yields every example exactly once across them all.
A background thread fetches the next shards while the current one is decoded; FLAC is
decoded to float32 and resampled (pedalboard) when another rate is asked for.

torch comes with the ``[ml]`` extra; :class:`Release` (the manifest and ``to_pandas()``)
needs only pyarrow and pandas.
"""

from __future__ import annotations

import io
import json
import queue
import random
import threading
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from .lake import Lake, open_lake
from .release.build import MANIFEST
from .release.shards import META_COLUMNS

try:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # the [ml] extra is not installed: Release still works
    torch = None
    IterableDataset = object

    def get_worker_info():
        return None


class ReleaseNotFound(FileNotFoundError):
    """No finished release there: no ``release.json`` (never built, or a build still running or killed)."""


class Release:
    """A finished release, opened by its root: ``<lake>/releases/NAME`` (a path or ``s3://...``)."""

    def __init__(self, uri: str, lake: Lake | None = None) -> None:
        self.uri = uri
        self.lake = lake or open_lake(uri)
        if not self.lake.exists(MANIFEST):
            raise ReleaseNotFound(f"{uri} has no {MANIFEST}: not a finished release")
        self.manifest = json.loads(self.lake.get(MANIFEST))

    @property
    def splits(self) -> list[str]:
        return [s for s, info in self.manifest["splits"].items() if info["examples"]]

    def shards(self, split: str, fmt: str = "parquet") -> list[dict]:
        if split not in self.manifest["splits"]:
            raise KeyError(f"no split {split!r} in {self.uri} (has {sorted(self.manifest['splits'])})")
        return self.manifest["splits"][split]["shards"][fmt]

    def to_pandas(self, split: str | None = None):
        """Metadata of every example (no audio, no MIDI) as a pandas DataFrame."""
        import pandas as pd

        frames = [
            pq.read_table(io.BytesIO(self.lake.get(shard["path"])), columns=META_COLUMNS).to_pandas()
            for s in ([split] if split else self.splits)
            for shard in self.shards(s)
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=META_COLUMNS)


def decode(flac: bytes, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """FLAC bytes to mono float32 in [-1, 1], resampled to ``sample_rate`` when given."""
    audio, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=False)
    if sample_rate and sample_rate != rate:
        from pedalboard.io import StreamResampler

        resampler = StreamResampler(rate, sample_rate, 1)
        audio = np.concatenate([resampler.process(audio[None, :])[0], resampler.process()[0]])
        rate = sample_rate
    return audio, rate


def _rank() -> tuple[int, int]:
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ReleaseDataset(IterableDataset):
    """Examples of one split: ``{"audio": float32 tensor, "sample_rate": int, **metadata}``."""

    def __init__(
        self,
        uri: str,
        split: str = "train",
        sample_rate: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        prefetch: int = 2,
        columns: list[str] | None = None,
    ) -> None:
        if torch is None:
            raise ImportError("ReleaseDataset needs torch: pip install 'dx7lake[ml]'")
        self.release = Release(uri)
        self.split = split
        self.shard_list = self.release.shards(split)
        self.sample_rate = sample_rate
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        self.prefetch = prefetch
        self.columns = columns

    def set_epoch(self, epoch: int) -> None:
        """Another shard order per epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = epoch

    def assigned_shards(self) -> list[dict]:
        """This rank's and this worker's shards, in this epoch's order."""
        order = list(range(len(self.shard_list)))
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        rank, world = _rank() if self.rank is None else (self.rank, self.world_size or 1)
        order = order[rank::world]
        worker = get_worker_info()
        if worker is not None:
            order = order[worker.id :: worker.num_workers]
        return [self.shard_list[i] for i in order]

    def __iter__(self) -> Iterator[dict]:
        for row in examples(self.release.lake, self.assigned_shards(), self.sample_rate, self.columns, self.prefetch):
            row["audio"] = torch.from_numpy(row["audio"])
            yield row


def prefetched(lake: Lake, keys: list[str], depth: int = 2) -> Iterator[bytes]:
    """The objects of ``keys`` in order, fetched up to ``depth`` ahead by a background thread."""
    ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def fetch() -> None:
        for key in keys:
            try:
                item = lake.get(key)
            except Exception as err:  # handed to the consumer, raised there
                item = err
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    thread = threading.Thread(target=fetch, name="release-prefetch", daemon=True)
    thread.start()
    try:
        for _ in keys:
            item = ready.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:  # also when the consumer stops early: the thread ends
        stop.set()
        thread.join()


def examples(
    lake: Lake, shards: list[dict], sample_rate: int | None = None, columns: list[str] | None = None, prefetch: int = 2
) -> Iterator[dict]:
    """Examples of ``shards`` in order, audio decoded to a float32 numpy array (no torch needed)."""
    columns = ["audio", *(META_COLUMNS if columns is None else [c for c in columns if c != "audio"])]
    for data in prefetched(lake, [s["path"] for s in shards], prefetch):
        for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(columns=columns):
            for row in batch.to_pylist():
                audio, rate = decode(row.pop("audio")["bytes"], sample_rate)
                yield {"audio": audio, "sample_rate": rate, **row}
