"""Run validation: reconcile the lake with the warehouse and name every failing key."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import midi, render, warehouse
from .config import Settings
from .lake import open_lake
from .postgres import connect


@dataclass
class Validation:
    raw_rows: int = 0
    bronze_rows: int = 0
    patches: int = 0
    failures: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def fail(self, key: str, reason: str) -> None:
        self.failures.append({"key": key, "reason": reason})

    def as_dict(self) -> dict:
        return {**self.__dict__, "passed": self.passed}


def validate_run(settings: Settings, patch_ids: list[str]) -> Validation:
    """Bronze rows = raw rows per partition; every unique content × patch has a render
    whose object exists."""
    lake = open_lake(settings.lake_uri)
    result = Validation(patches=len(patch_ids))
    with connect(settings) as conn:
        raw_by_p = dict(conn.execute("select p, count(*) from raw.detailed_notes group by p").fetchall())
        result.raw_rows = sum(raw_by_p.values())
        for p in midi.bronze_partitions(lake):
            table = midi.read_bronze_partition(lake, p)
            n = 0 if table is None else table.num_rows
            result.bronze_rows += n
            if raw_by_p.get(p, 0) != n:
                result.fail(f"{midi.BRONZE_PREFIX}/p={p}", f"bronze has {n} rows, raw has {raw_by_p.get(p, 0)}")
        missing = conn.execute(
            """select c.content_hash, x.patch_id from silver.phrase_contents c
               cross join unnest(%s::text[]) as x(patch_id)
               left join gold.renders r on r.content_hash = c.content_hash and r.patch_id = x.patch_id
               where r.key is null""",
            (patch_ids,),
        ).fetchall()
        for content_hash, patch_id in missing:
            result.fail(render.render_key(patch_id, content_hash), "no render in gold.renders")
        for (key,) in conn.execute("select key from gold.renders where patch_id = any(%s)", (patch_ids,)):
            if not lake.exists(key):
                result.fail(key, "object missing from the lake")
        if warehouse.scalar(conn, "select count(*) from raw.detailed_notes") == 0:
            result.fail("raw.detailed_notes", "no notes loaded")
    return result
