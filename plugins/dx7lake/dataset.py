"""Stream a release into PyTorch: shards, not objects, from a local folder or ``s3://``.

:class:`ReleaseDataset` is a ``torch.utils.data.IterableDataset`` over one split's Parquet
shards. Each epoch orders the shards by a seeded shuffle (the same order in every worker
and rank), gives each rank every ``world_size``-th shard and each DataLoader worker every
``num_workers``-th of those, so an epoch yields every example exactly once across them all.
A background thread fetches the next shards while the current one is decoded; FLAC is
decoded to float32 by a small thread pool (pedalboard) and resampled when another rate is asked for.

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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
from pedalboard.io import AudioFile, StreamResampler

from .lake import Lake, open_lake
from .release.build import MANIFEST
from .release.shards import META_COLUMNS

DECODE_THREADS = 2  # per process (each DataLoader worker has its own)
DECODE_BATCH = 64  # examples decoded ahead at a time

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
    """FLAC bytes to mono float32 in [-1, 1], resampled to ``sample_rate`` when given.

    Decoded by pedalboard (libFLAC through JUCE), about twice as fast as libsndfile here;
    JUCE scales 16-bit samples by 1/32767, so they are put back on libsndfile's (and Hugging
    Face ``datasets``') 1/32768 scale exactly: the same floats whichever reader a user compares.
    """
    with AudioFile(io.BytesIO(flac)) as f:
        audio, rate, width = f.read(f.frames)[0], int(f.samplerate), f.file_dtype
    if width == "int16":
        audio = np.rint(audio * 32767) / np.float32(32768)
    if sample_rate and sample_rate != rate:
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
        decode_threads: int = DECODE_THREADS,
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
        self.decode_threads = decode_threads

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
        shards = self.assigned_shards()
        lake = self.release.lake
        for row in examples(lake, shards, self.sample_rate, self.columns, self.prefetch, self.decode_threads):
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
    lake: Lake,
    shards: list[dict],
    sample_rate: int | None = None,
    columns: list[str] | None = None,
    prefetch: int = 2,
    decode_threads: int = DECODE_THREADS,
) -> Iterator[dict]:
    """Examples of ``shards`` in order, audio decoded to a float32 numpy array (no torch needed).

    Decoding is most of a local read's time (the shard itself is one sequential read), so
    ``decode_threads`` threads decode ``DECODE_BATCH`` examples at a time (pedalboard releases
    the GIL while it decodes); at most that many decoded examples are held.
    """
    columns = ["audio", *(META_COLUMNS if columns is None else [c for c in columns if c != "audio"])]
    pool = ThreadPoolExecutor(max(1, decode_threads), thread_name_prefix="release-decode")
    try:
        for data in prefetched(lake, [s["path"] for s in shards], prefetch):
            for batch in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=DECODE_BATCH, columns=columns):
                rows = batch.to_pylist()
                decoded = pool.map(lambda row: decode(row.pop("audio")["bytes"], sample_rate), rows)
                for row, (audio, rate) in zip(rows, decoded, strict=True):
                    yield {"audio": audio, "sample_rate": rate, **row}
    finally:
        pool.shutdown(cancel_futures=True)
