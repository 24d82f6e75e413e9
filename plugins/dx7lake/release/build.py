"""``dx7lake release``: gold renders and silver metadata into an immutable, sharded release.

Shards are written first, the card next, ``release.json`` last: a build killed at any point
leaves a folder without ``release.json``, which no reader takes for a release, and a rerun
rewrites the same shards (they are deterministic) and finishes it. A finished release is
never touched again: a rerun with the same request reports it, another request refuses.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg

from .. import __version__
from ..gold.engine import RenderSpec
from ..lake import Lake
from . import examples as ex
from .shards import parquet_shard, tar_shard

RELEASES = "releases"
MANIFEST = "release.json"
FORMAT_VERSION = 1
DEFAULT_SHARD_BYTES = 384 << 20  # within the 256-512 MB that streaming loaders and the Hub work best with
FETCH_THREADS = 8
FETCH_CHUNK = 256
PREVIEWS = 2  # compressed previews per (split, patch) for the card and browser
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class ReleaseExists(RuntimeError):
    """A finished release of that name was asked for with other settings: releases are immutable."""


def release_prefix(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(f"invalid release name {name!r}: letters, digits, '.', '_', '-'")
    return f"{RELEASES}/{name}"


def read_release(lake: Lake, name: str) -> dict | None:
    """The release's manifest, or None when the release does not exist (or was never finished)."""
    key = f"{release_prefix(name)}/{MANIFEST}"
    return json.loads(lake.get(key)) if lake.exists(key) else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def build_release(
    lake: Lake,
    conn: psycopg.Connection,
    name: str,
    patches: Sequence[str] | None = None,
    split_by: str = "song",
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    card: bool = True,
    previews: int = PREVIEWS,
    on_shard: Callable[[str], None] | None = None,
    profile_id: str | None = None,
) -> dict:
    """Write release ``name`` for ``patches`` (patch ids or names; default every patch in gold)
    in one render profile (``profile_id``; the default profile when None).

    ``previews`` MP3s per (split, patch) go with the card. ``on_shard`` is called with each
    shard key once it is in the lake (progress).
    """
    if split_by not in ex.SPLIT_BY:
        raise ValueError(f"split_by must be one of {ex.SPLIT_BY}, not {split_by!r}")
    started = time.perf_counter()
    prefix = release_prefix(name)
    profile_id = profile_id or RenderSpec().profile_id
    chosen = _choose_patches(lake, profile_id, patches)
    request = {"profile_id": profile_id, "patches": chosen, "split_by": split_by, "shard_bytes": shard_bytes}
    done = read_release(lake, name)
    if done is not None:
        if done["request"] != request:
            raise ReleaseExists(
                f"release {name!r} exists with {done['request']}; releases are immutable: choose another name"
            )
        return {"release": name, "status": "exists", "examples": done["examples"]}

    # One render partition at a time: its manifest rows and silver facts, then its examples
    # into each split's open shard (cut at ~shard_bytes). Memory: one partition's rows, three
    # open shards and the keys seen (~100 bytes a render), not the lake's rows.
    partitions = ex.gold_partitions(lake, profile_id, chosen)
    names, params, seen = {}, {}, set()
    by_patch = ex.patch_splits(ex.patches_with_rows(lake, partitions)) if split_by == "patch" else {}
    writer = SplitWriter(lake, prefix, params, shard_bytes, previews, on_shard)
    with writer:
        for parts in partitions.values():
            rows = []
            for patch_id, table in ex.partition_rows(lake, parts).items():
                if table.num_rows and patch_id not in params:
                    first = table.slice(0, 1).to_pylist()[0]
                    names[patch_id], params[patch_id] = first["patch_name"], ex.params_json(first["patch_vced"])
                for row in table.drop_columns(["patch_vced"]).to_pylist():
                    if row["key"] not in seen:  # one example per render, whichever partition names it
                        seen.add(row["key"])
                        rows.append(row)
            contents = ex.silver_contents(conn, {r["content_hash"] for r in rows})
            per_split: dict[str, list[tuple[dict, ex.ContentInfo]]] = {s: [] for s in ex.SPLITS}
            for row in sorted(rows, key=lambda r: (r["content_hash"], r["patch_id"])):
                info = contents.get(row["content_hash"])
                if info is None:  # rendered once, no longer a phrase of silver: not part of this corpus
                    writer.skipped.append({"key": row["key"], "reason": "content not in silver"})
                    continue
                split = by_patch[row["patch_id"]] if split_by == "patch" else ex.SILVER_SPLIT[info.silver_split]
                per_split[split].append((row, info))
            for split, items in per_split.items():
                writer.add(split, items)
        splits = writer.finish()
    skipped = writer.skipped
    by_patch = {p: s for p, s in by_patch.items() if p in names}

    manifest = {
        "name": name,
        "format_version": FORMAT_VERSION,
        "dx7lake_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "request": request,
        "patches": [{"patch_id": p, "patch_name": names[p]} for p in sorted(names)],
        "patch_splits": by_patch,
        "examples": sum(s["examples"] for s in splits.values()),
        "splits": splits,
        "skipped": skipped,
    }
    if card:
        from .card import write_card

        manifest["card"] = write_card(lake, conn, prefix, manifest, writer.preview_samples())
    lake.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())  # last: commits
    return {
        "release": name,
        "status": "written",
        "examples": manifest["examples"],
        "splits": {s: v["examples"] for s, v in splits.items()},
        "skipped": len(skipped),
        "seconds": round(time.perf_counter() - started, 3),
    }


class SplitWriter:
    """Shards of every split, fed a render partition at a time: gold objects fetched by threads,
    checked against their manifest sha256, assembled with their metadata, cut into shards of
    ~``shard_bytes`` (the same examples in the Parquet and the tar shard of one index)."""

    def __init__(
        self,
        lake: Lake,
        prefix: str,
        params: dict[str, str],
        shard_bytes: int,
        previews: int = PREVIEWS,
        on_shard: Callable[[str], None] | None = None,
    ) -> None:
        self.lake, self.prefix, self.params, self.shard_bytes = lake, prefix, params, shard_bytes
        self.previews, self.on_shard = previews, on_shard
        self.skipped: list[dict] = []
        self._open: dict[str, dict] = {}  # split -> its open shard's examples, bytes, and shards written
        self.samples: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
        self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="release-fetch")

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(cancel_futures=True)

    def preview_samples(self) -> list[tuple[str, bytes]]:
        return [sample for group in self.samples.values() for sample in group]

    def _flush(self, split: str, batch: list[dict], shards: dict[str, list[dict]]) -> None:
        index = len(shards["parquet"])
        for fmt, ext, write in (("parquet", "parquet", parquet_shard), ("webdataset", "tar", tar_shard)):
            data = write(batch)
            rel = f"{fmt}/{split}/{split}-{index:05d}.{ext}"
            self.lake.put(f"{self.prefix}/{rel}", data)
            shards[fmt].append({"path": rel, "sha256": _sha256(data), "rows": len(batch), "bytes": len(data)})
            if self.on_shard:
                self.on_shard(rel)

    def add(self, split: str, items: Sequence[tuple[dict, ex.ContentInfo]]) -> None:
        """(manifest row, content info) pairs of ``split``, in order: fetched, checked, and cut
        into a shard whenever the split's open one reaches ~``shard_bytes``."""
        state = self._open.setdefault(split, {"batch": [], "bytes": 0, "duration": 0.0, "shards": _no_shards()})
        for chunk in _chunks(items, FETCH_CHUNK):
            for (row, info), flac in zip(
                chunk, self._pool.map(lambda it: self.lake.get(it[0]["key"]), chunk), strict=True
            ):
                if _sha256(flac) != row["sha256"]:
                    self.skipped.append({"key": row["key"], "reason": "gold object does not match its manifest sha256"})
                    continue
                example = ex.example_meta(row, info, split, self.params[row["patch_id"]]) | {"flac": flac}
                if len(self.samples[split, row["patch_id"]]) < self.previews:
                    self.samples[split, row["patch_id"]].append((f"{split}/{example['key']}", flac))
                state["batch"].append(example)
                state["bytes"] += len(flac) + len(example["midi"])
                state["duration"] += row["duration_s"]
                if state["bytes"] >= self.shard_bytes:
                    self._flush(split, state["batch"], state["shards"])
                    state["batch"], state["bytes"] = [], 0

    def finish(self) -> dict[str, dict]:
        """Write every split's last shard; each split's examples, audio seconds and shard list."""
        out = {}
        for split in ex.SPLITS:
            state = self._open.pop(split, {"batch": [], "duration": 0.0, "shards": _no_shards()})
            if state["batch"]:
                self._flush(split, state["batch"], state["shards"])
            out[split] = {
                "examples": sum(s["rows"] for s in state["shards"]["parquet"]),
                "duration_s": round(state["duration"], 3),
                "shards": state["shards"],
            }
        return out


def _no_shards() -> dict[str, list[dict]]:
    return {"parquet": [], "webdataset": []}


def _choose_patches(lake: Lake, profile_id: str, patches: Sequence[str] | None) -> list[str]:
    """Patch ids in gold's profile matching ``patches`` (ids or voice names); all of its patches by default."""
    available = ex.gold_patches(lake, profile_id)
    if not patches:
        return available
    from ..gold.patches import choose_voices

    wanted = {p for p in patches if p in available}
    names = [p for p in patches if p not in available]
    if names:
        wanted |= {v.patch_id for v in choose_voices(",".join(names))}
    missing = sorted(wanted - set(available))
    if missing:
        raise ValueError(f"patches {missing} have no renders in profile {profile_id} (render them first)")
    return sorted(wanted)
