"""How far gold.renders covers silver: what a plan (and a render task) need not look at again.

Finding the contents gold lacks is an anti-join of silver.phrase_contents against
gold.renders. Over the whole of silver, that grows with the lake: at Lakh's 35 M contents
and 2 patches, about a minute per plan, and as much again over the render tasks. So
``gold.render_coverage`` keeps, per (profile, patch), ``rendered_through``: every content
whose ``built_at`` is at or before it has its render in gold.renders. A plan looks only at
the contents built after it, and moves it up to just before the oldest one still lacking a
render.

Why that holds:
- a content is built (dbt's ``built_at`` is its transaction's start) and later rendered
  under its hash; a render, once loaded, stays: rows of gold.renders are upserted, never
  deleted by the pipeline. What does delete them (a migration, an operator) fires a trigger
  that forgets the coverage of their (profile, patch), so the next plan looks at everything;
- a content dbt recomputes takes a new ``built_at``, after the mark, and is looked at again;
- a dbt build whose transaction is still open when a plan runs will commit contents built
  at its start, so the mark stays before the start of every open transaction;
- the plan reads and moves the mark under a lock that the trigger's delete waits for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

# the contents built after a voice's mark, per render partition: the oldest that gold.renders
# lacks, how many it lacks, the newest, and how many were looked at. The mark goes as a
# value, not a subquery, so Postgres plans with it: a few new contents are found through
# the built_at index and looked up in gold.renders by its key, not hashed against it.
_SCAN_SQL = """
select c.p,
       min(c.built_at) filter (where r.key is null),
       count(*) filter (where r.key is null),
       max(c.built_at),
       count(*)
from silver.phrase_contents as c
left join gold.renders as r on (r.profile_id, r.content_hash, r.patch_id) = (%(profile)s, c.content_hash, %(patch)s)
where c.built_at > %(since)s::timestamptz
group by c.p
"""

# the newest mark a plan may set: before the start of every transaction still open (a dbt
# build in one commits contents built at its start)
_OPEN_SINCE_SQL = """
select min(xact_start) - interval '1 microsecond' from pg_stat_activity
where pid <> pg_backend_pid() and xact_start is not null and datname = current_database()
"""


def rendered_through(conn: psycopg.Connection, profile_ids: Sequence[str], patch_ids: Sequence[str]) -> str | datetime:
    """The oldest mark among these voices (profiles x patches): the contents a render task or
    validation need look at are those built after it ('-infinity' for a voice without one)."""
    found = conn.execute(
        """select bool_and(c.rendered_through is not null), min(c.rendered_through)
           from unnest(%s::text[]) as x(profile_id) cross join unnest(%s::text[]) as v(patch_id)
           left join gold.render_coverage as c using (profile_id, patch_id)""",
        (list(profile_ids), list(patch_ids)),
    ).fetchone()
    return found[1] if found[0] else "-infinity"


def uncovered_partitions(
    conn: psycopg.Connection, profile_ids: Sequence[str], patch_ids: Sequence[str]
) -> tuple[list[tuple[str, int]], int]:
    """(profile, partition) pairs where silver has contents gold.renders lacks for a voice,
    and how many (content, voice) pairs were looked at; moves each (profile, patch)'s mark up
    to what gold covers. Reads only the contents built since the marks (all, the first time)."""
    uncovered: set[tuple[str, int]] = set()
    looked = 0
    with conn.transaction():
        conn.execute("lock table gold.render_coverage in exclusive mode")
        open_since = conn.execute(_OPEN_SINCE_SQL).fetchone()[0]
        marks = []
        for profile_id in profile_ids:
            for patch_id in patch_ids:
                since = rendered_through(conn, [profile_id], [patch_id])
                rows = conn.execute(_SCAN_SQL, {"profile": profile_id, "patch": patch_id, "since": since}).fetchall()
                if not rows:
                    continue
                missing = [oldest for _, oldest, *_ in rows if oldest is not None]
                uncovered.update((profile_id, int(p)) for p, _, lacking, *_ in rows if lacking)
                looked += sum(n for *_, n in rows)
                # every content built before the oldest one missing is covered (built_at has microseconds)
                through = min(missing) - timedelta(microseconds=1) if missing else max(r[3] for r in rows)
                marks.append((profile_id, patch_id, through if open_since is None else min(through, open_since)))
        with conn.cursor() as cur:
            cur.executemany(
                """insert into gold.render_coverage (profile_id, patch_id, rendered_through) values (%s, %s, %s)
                   on conflict (profile_id, patch_id) do update set rendered_through
                       = greatest(gold.render_coverage.rendered_through, excluded.rendered_through)""",
                marks,
            )
    return sorted(uncovered), looked
