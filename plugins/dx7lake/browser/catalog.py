"""What the browser shows: phrase numbers and metadata from the warehouse, renders from manifests.

Phrase numbers live in ``browser.phrases``, an append-only table: a rendered phrase gets
the next number the first time the browser sees it, in song, track and bar order, and
keeps it for good, so ``/phrases/<n>`` links survive restarts and new data. The table
also holds the facts the index filters on (song, split, pitch range), copied from the
contracted silver marts (``phrases``, ``phrase_stats``, ``track_summary``; see the
``phrase_browser`` exposure), so a page of the index never scans the notes.

Audio keys come only from gold manifests read through the lake: the warehouse says which
partition's manifest (the union of its parts) holds a (profile, content, patch) triple, and
the manifest row gives the object key. Pages show one render profile at a time
(``Filters.profile``; the default profile unless the URL names another).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..config import Settings
from ..gold.engine import RenderSpec
from ..gold.render import manifest_parts, read_manifest
from ..lake import Lake, lake_of
from ..warehouse.postgres import warehouse_url
from ..warehouse.schema import BROWSER_DDL

SPLITS = ("train", "validate", "test")
# the index's orders: a phrase's loudness or brightness is the mean over its renders (of the
# chosen patch, with a patch filter); phrases without features (older renders) sort last
SORTS = {
    "number": "b.n",
    "loudness": "lufs asc nulls last, b.n",
    "-loudness": "lufs desc nulls last, b.n",
    "centroid": "centroid asc nulls last, b.n",
    "-centroid": "centroid desc nulls last, b.n",
}


# New rendered phrases, numbered in song / track / bar order (under an advisory lock, so
# concurrent API-server workers number each phrase once and leave no gaps).
LOCK = "select pg_advisory_xact_lock(hashtext('dx7lake.browser.phrases'))"
NUMBER_NEW = """
insert into browser.phrases (
    phrase_id, content_hash, midi_id, song, track_id, track_index, bucket, set_type, n_notes, min_pitch, max_pitch
)
select p.phrase_id, p.content_hash, p.midi_id, t.source_key, p.track_id, t.track_index, p.bucket,
       p.set_type, p.n_notes, s.pitch_min, s.pitch_max
from silver.phrases p
join silver.phrase_stats s on s.phrase_id = p.phrase_id
left join silver.track_summary t on t.track_id = p.track_id
where exists (select 1 from gold.renders g where g.content_hash = p.content_hash)
  and not exists (select 1 from browser.phrases b where b.phrase_id = p.phrase_id)
order by t.source_key, p.midi_id, t.track_index, p.track_id, p.bucket
"""

PHRASE_COLUMNS = (
    "b.n, b.phrase_id, b.content_hash, b.midi_id, b.song, b.track_id, b.track_index, b.bucket, b.set_type, "
    "b.n_notes, b.min_pitch, b.max_pitch"
)


@dataclass(frozen=True)
class Filters:
    """The index's filters; every value is bound as a query parameter, never pasted into SQL."""

    profile: str = ""  # a render profile id: the renders shown (set by the app from the URL)
    split: str | None = None
    patch: str | None = None
    pitch_min: int | None = None
    pitch_max: int | None = None
    song: str | None = None
    lufs_min: float | None = None  # a render of the phrase (of ``patch``) within these bounds
    lufs_max: float | None = None
    centroid_min: float | None = None
    centroid_max: float | None = None
    sort: str = "number"  # a key of SORTS

    def renders(self) -> str:
        """The SQL condition on ``gold.renders g`` (joined to ``b``) of the renders that count."""
        clauses = ["g.profile_id = %(profile)s", "g.content_hash = b.content_hash"]
        if self.patch:
            clauses.append("g.patch_id = %(patch)s")
        for column, name in (("lufs", "lufs"), ("spectral_centroid_hz", "centroid")):
            if getattr(self, f"{name}_min") is not None:
                clauses.append(f"g.{column} >= %({name}_min)s")
            if getattr(self, f"{name}_max") is not None:
                clauses.append(f"g.{column} <= %({name}_max)s")
        return " and ".join(clauses)

    def where(self) -> tuple[str, dict[str, Any]]:
        """A SQL condition on ``browser.phrases b`` and its parameters."""
        clauses = [f"exists (select 1 from gold.renders g where {self.renders()})"]
        if self.split:
            clauses.append("b.set_type = %(split)s")
        if self.pitch_min is not None:
            clauses.append("b.min_pitch >= %(pitch_min)s")
        if self.pitch_max is not None:
            clauses.append("b.max_pitch <= %(pitch_max)s")
        if self.song:
            clauses.append("(b.song ilike '%%' || %(song)s || '%%' or b.midi_id = %(song)s)")
        return " and ".join(clauses), asdict(self)

    def query(self) -> dict[str, str]:
        """The filters as URL query parameters (unset ones, the default order, and the profile,
        which is part of the path, left out)."""
        return {
            k: str(v)
            for k, v in asdict(self).items()
            if v not in (None, "") and (k, v) != ("sort", "number") and k != "profile"
        }


class _LRU:
    """A small thread-safe least-recently-used cache of computed values."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def forget(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Catalog:
    """Phrases and their renders for one home (lake + warehouse)."""

    def __init__(self, settings: Settings, refresh_s: float = 30.0, lake: Lake | None = None) -> None:
        self.settings = settings
        self.lake = lake or lake_of(settings)
        self.refresh_s = refresh_s
        self._url: str | None = None
        self._numbered_at = float("-inf")
        self._lock = threading.Lock()
        self._manifests = _LRU(64)
        self._objects = _LRU(32)
        self._patch_names: dict[str, str] = {}
        self._profiles: dict[str, str] = {}
        self.default_profile = RenderSpec().profile_id

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        if self._url is None:
            self._url = warehouse_url(self.settings)
        with psycopg.connect(self._url, row_factory=dict_row) as conn:
            yield conn

    def refresh(self, force: bool = False) -> int:
        """Number phrases rendered since the last look (at most every ``refresh_s``); returns how many."""
        with self._lock:
            if not force and time.monotonic() - self._numbered_at < self.refresh_s:
                return 0
            with self._conn() as conn:
                conn.execute(LOCK)
                conn.execute(BROWSER_DDL)
                added = conn.execute(NUMBER_NEW).rowcount
                patches = conn.execute(
                    "select patch_id, min(profile_id) as profile_id from gold.renders group by patch_id"
                ).fetchall()
                profiles = conn.execute(
                    "select p.profile_id, coalesce(p.name, p.profile_id) as name from gold.profiles p"
                    " where exists (select 1 from gold.renders g where g.profile_id = p.profile_id)"
                    " order by p.registered_at, p.profile_id"
                ).fetchall()
            self._numbered_at = time.monotonic()
            self._patch_names = {r["patch_id"]: self._patch_name(r["profile_id"], r["patch_id"]) for r in patches}
            self._profiles = {r["profile_id"]: r["name"] for r in profiles}
            return added

    def profiles(self) -> dict[str, str]:
        """Profile id to name, for every profile with renders (the page's picker)."""
        self.refresh()
        return dict(self._profiles)

    def _patch_name(self, profile_id: str, patch_id: str) -> str:
        first = next(iter(manifest_parts(self.lake, profile_id, patch_id)), None)
        if first is None:
            return patch_id
        names = self.lake.read_parquet(first, ["patch_name"]).column(0).to_pylist()
        return names[0] if names else patch_id

    def patches(self) -> dict[str, str]:
        """Patch id to voice name, for every patch with renders."""
        self.refresh()
        return dict(sorted(self._patch_names.items(), key=lambda item: (item[1], item[0])))

    def page(self, filters: Filters, offset: int, limit: int) -> tuple[int, list[dict]]:
        """The total matching and one page of phrases, each with the patches it was rendered in."""
        self.refresh()
        where, params = filters.where()
        with self._conn() as conn:
            total = conn.execute(f"select count(*) as c from browser.phrases b where {where}", params).fetchone()
            rows = conn.execute(
                f"select {PHRASE_COLUMNS}, array(select g.patch_id from gold.renders g where g.profile_id = "
                "%(profile)s and g.content_hash = b.content_hash order by g.patch_id) as patches, "
                f"(select avg(g.lufs) from gold.renders g where {filters.renders()}) as lufs, "
                f"(select avg(g.spectral_centroid_hz) from gold.renders g where {filters.renders()}) as centroid "
                f"from browser.phrases b where {where} order by {SORTS[filters.sort]} "
                "limit %(limit)s offset %(offset)s",
                params | {"limit": limit, "offset": offset},
            ).fetchall()
        return int(total["c"]), rows

    def phrase(self, n: int, profile: str) -> dict | None:
        """Phrase ``n`` with its renders in ``profile`` (patch id and render partition), or None."""
        self.refresh()
        with self._conn() as conn:
            row = conn.execute(f"select {PHRASE_COLUMNS} from browser.phrases b where b.n = %s", (n,)).fetchone()
            if row is None:
                return None
            renders = conn.execute(
                "select patch_id, render_p from gold.renders where profile_id = %s and content_hash = %s"
                " order by patch_id",
                (profile, row["content_hash"]),
            ).fetchall()
            row["duplicates"] = conn.execute(
                "select count(*) - 1 as c from browser.phrases where content_hash = %s", (row["content_hash"],)
            ).fetchone()["c"]
        if not renders:
            return None
        row["renders"] = {r["patch_id"]: int(r["render_p"]) for r in renders}
        row["profile"] = profile
        return row

    def neighbours(self, n: int, filters: Filters) -> tuple[int | None, int | None]:
        """The previous and next phrase numbers that match ``filters``."""
        where, params = filters.where()
        with self._conn() as conn:
            row = conn.execute(
                f"select (select max(b.n) from browser.phrases b where b.n < %(n)s and {where}) as prev, "
                f"(select min(b.n) from browser.phrases b where b.n > %(n)s and {where}) as next",
                params | {"n": n},
            ).fetchone()
        return row["prev"], row["next"]

    def random(self, filters: Filters) -> int | None:
        """A phrase number drawn uniformly from those matching ``filters``."""
        self.refresh()
        where, params = filters.where()
        with self._conn() as conn:
            row = conn.execute(
                f"select b.n from browser.phrases b where {where} "
                f"offset floor(random() * (select count(*) from browser.phrases b where {where})) limit 1",
                params,
            ).fetchone()
        return None if row is None else int(row["n"])

    def _manifest(self, where: tuple[str, str, int]) -> dict[str, list]:
        def read() -> dict[str, list]:
            table = read_manifest(self.lake, *where)
            return {"content_hash": []} if table is None else table.to_pydict()

        return self._manifests.get(where, read)

    def render(self, phrase: dict, patch_id: str) -> dict | None:
        """The manifest row of ``phrase`` rendered with ``patch_id`` (None when there is none)."""
        render_p = phrase["renders"].get(patch_id)
        if render_p is None:
            return None
        where = (phrase["profile"], patch_id, render_p)
        columns = self._manifest(where)
        if phrase["content_hash"] not in columns["content_hash"]:  # a part added since cached: read again
            self._manifests.forget(where)
            columns = self._manifest(where)
            if phrase["content_hash"] not in columns["content_hash"]:
                return None
        i = columns["content_hash"].index(phrase["content_hash"])
        return {name: values[i] for name, values in columns.items() if name != "patch_vced"}

    def audio(self, render: dict) -> bytes:
        """The render's FLAC bytes, by the key its manifest row names."""
        return self._objects.get(render["key"], lambda: self.lake.get(render["key"]))

    def derived(self, kind: str, render: dict, compute: Callable[[bytes], Any]) -> Any:
        """A value computed from a render's audio (a spectrogram), cached by its content digest."""
        return self._objects.get((kind, render["sha256"]), lambda: compute(self.audio(render)))
