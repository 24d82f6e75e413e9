"""Every table Python writes, defined once: ``raw``, ``gold``, ``ops`` and ``browser``.

dbt owns ``staging``, ``intermediate``, ``silver`` and ``analytics`` (and reads the tables
below as sources: ``dbt/models/staging/__sources.yml``, ``analytics/__sources.yml``, whose
columns must match these). Each schema has one writer:

- ``raw.detailed_notes``: the bronze copy (``load.load_bronze_part``);
- ``raw.bronze_parts``: the ledger of bronze parts loaded (their files, rows, run, time),
  written with the part's rows; dbt's ``int_phrases`` reads it to take only new files;
- ``gold.renders``: the gold manifests, latest row per (profile, content, patch), with the time
  each was loaded (``loaded_at``: what dbt's tests of the gold source tell new renders by)
  (``load.load_manifest_parts``);
- ``gold.manifest_parts``: the ledger of manifest parts loaded, by run (``load.load_manifest_parts``);
- ``gold.render_coverage``: per (profile, patch), the newest silver ``built_at`` up to which
  every content has its render (``coverage.uncovered_partitions``; reset by a trigger when
  rows of gold.renders are deleted);
- ``gold.profiles``: the render profiles, id, name and canonical form (``load.register_profiles``
  for the profiles a run picks, ``load.load_manifest_parts`` for those its parts name);
- ``ops.*``: run figures (``ops.load_stats`` by the raw load, the rest by ``stats``);
- ``browser.phrases``: the phrase browser's stable numbering (``browser.catalog``).

See docs/ARCHITECTURE.md for the contracts.
"""

from __future__ import annotations

import psycopg


def _key_with_profile(table: str, constraint: str, columns: str) -> str:
    """DDL that moves ``table``'s primary key to ``columns`` once, on a warehouse from before
    render profiles (whose key lacks ``profile_id``); a no-op on a current one."""
    return f"""do $$ begin
    if not exists (select 1 from pg_index i join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
                   where i.indrelid = '{table}'::regclass and i.indisprimary and a.attname = 'profile_id') then
        alter table {table} drop constraint {constraint};
        alter table {table} add primary key ({columns});
    end if;
end $$;
"""


# gold.renders.loaded_at (when a load last upserted the row), added to a warehouse from before
# it: an old row takes the newest load of its partition in the ledger (an upper bound of its
# own, so no row of the latest loading run escapes the run's tests), -infinity when the ledger
# has none (legacy rows); new rows take now(). Runs once (after the ledger's DDL, which it
# reads): one update of every row, a rewrite of the table.
_LOADED_AT = """do $$ begin
    if not exists (select 1 from pg_attribute where attrelid = 'gold.renders'::regclass
                   and attname = 'loaded_at' and not attisdropped) then
        alter table gold.renders add column loaded_at timestamptz;
        update gold.renders as r set loaded_at = l.loaded_at
        from (select profile_id, patch_id, render_p, max(loaded_at) as loaded_at
              from gold.manifest_parts group by profile_id, patch_id, render_p) as l
        where (l.profile_id, l.patch_id, l.render_p) = (r.profile_id, r.patch_id, r.render_p);
        update gold.renders set loaded_at = '-infinity' where loaded_at is null;
        alter table gold.renders alter column loaded_at set not null, alter column loaded_at set default now();
    end if;
end $$;
"""

DDL = (
    """
create schema if not exists raw;
create schema if not exists ops;
create schema if not exists gold;
create table if not exists raw.detailed_notes (
    midi_id text not null,
    track_id text not null,
    message_id text not null,
    start_time double precision not null,
    duration double precision not null,
    velocity bigint not null,
    note bigint not null,
    set_type text not null,
    p text not null,
    channel smallint,
    program smallint,
    is_drum boolean not null,
    track_index integer not null,
    start_seconds double precision,
    duration_seconds double precision,
    source_key text,
    primary key (message_id)
);
create index if not exists detailed_notes_p on raw.detailed_notes (p);
create index if not exists detailed_notes_track on raw.detailed_notes (track_id);
create index if not exists detailed_notes_midi on raw.detailed_notes (midi_id);
create table if not exists raw.bronze_parts (
    p text not null,
    part text not null,
    midi_ids text[] not null,
    rows bigint not null,
    run_id text not null,
    loaded_at timestamptz not null default now(),
    primary key (p, part)
);
create table if not exists ops.load_stats (
    run_id text not null,
    p text not null,
    rows bigint not null,
    bytes bigint not null,
    seconds double precision not null,
    loaded_at timestamptz not null default now(),
    primary key (run_id, p)
);
create table if not exists gold.renders (
    content_hash text not null,
    patch_id text not null,
    key text not null,
    sha256 text not null,
    bytes bigint not null,
    sample_rate integer not null,
    duration_s double precision not null,
    peak double precision not null,
    rms double precision not null,
    bpm double precision not null,
    notes jsonb not null,
    render_p integer not null,
    note_length text,
    profile_id text not null,
    loaded_at timestamptz not null default now(),
    primary key (profile_id, content_hash, patch_id)
);
alter table gold.renders add column if not exists note_length text;
-- render profiles (gold/profiles.py): a warehouse from before them gets the column, its rows
-- the profile '' (none: `dx7lake migrate-profiles` reloads them under their profiles and
-- drops them), and the key the profile is part of
alter table gold.renders add column if not exists profile_id text not null default '';
"""
    + _key_with_profile("gold.renders", "renders_pkey", "profile_id, content_hash, patch_id")
    + """-- audio features (gold/features.py): null for rows of manifest parts written before them
alter table gold.renders add column if not exists lufs double precision;
alter table gold.renders add column if not exists true_peak_dbtp double precision;
alter table gold.renders add column if not exists spectral_centroid_hz double precision;
alter table gold.renders add column if not exists spectral_bandwidth_hz double precision;
alter table gold.renders add column if not exists zcr double precision;
alter table gold.renders add column if not exists onset_count integer;
alter table gold.renders add column if not exists mfcc double precision[];
alter table gold.renders add column if not exists f0_hz double precision;
alter table gold.renders add column if not exists f0_error_cents double precision;
create table if not exists gold.manifest_parts (
    key text primary key,
    profile_id text not null default '',
    patch_id text not null,
    render_p integer not null,
    rows bigint not null,
    run_id text,
    loaded_at timestamptz not null default now()
);
create index if not exists manifest_parts_run on gold.manifest_parts (run_id);
alter table gold.manifest_parts add column if not exists profile_id text not null default '';
"""
    + _LOADED_AT
    + """create index if not exists renders_loaded_at on gold.renders (loaded_at);
create index if not exists renders_key on gold.renders (key);
create table if not exists gold.profiles (
    profile_id text primary key,
    name text,
    canonical text not null,
    registered_at timestamptz not null default now()
);
-- how far gold.renders covers silver, per (profile, patch): every content built at or before
-- rendered_through has its render (warehouse/coverage.py); what deletes renders forgets it
create table if not exists gold.render_coverage (
    profile_id text not null,
    patch_id text not null,
    rendered_through timestamptz not null,
    primary key (profile_id, patch_id)
);
create or replace function gold.forget_coverage_of_deleted() returns trigger language plpgsql as $f$
begin
    delete from gold.render_coverage as c
    using (select distinct profile_id, patch_id from deleted) as d
    where (c.profile_id, c.patch_id) = (d.profile_id, d.patch_id);
    return null;
end $f$;
create or replace function gold.forget_all_coverage() returns trigger language plpgsql as $f$
begin
    delete from gold.render_coverage;
    return null;
end $f$;
do $$ begin
    if not exists (select 1 from pg_trigger where tgname = 'renders_deleted_forget_coverage') then
        create trigger renders_deleted_forget_coverage after delete on gold.renders
            referencing old table as deleted for each statement execute function gold.forget_coverage_of_deleted();
        create trigger renders_truncated_forget_coverage after truncate on gold.renders
            for each statement execute function gold.forget_all_coverage();
    end if;
end $$;
create table if not exists ops.pipeline_runs (
    run_id text primary key,
    params jsonb not null default '{}'::jsonb,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null check (status in ('running', 'success', 'failed')),
    reason text
);
alter table ops.pipeline_runs add column if not exists reason text;
create table if not exists ops.task_stats (
    run_id text not null,
    stage text not null,
    partition text not null default '',
    rows bigint not null,
    seconds double precision not null,
    throughput double precision,
    recorded_at timestamptz not null default now(),
    primary key (run_id, stage, partition)
);
create table if not exists ops.render_stats (
    run_id text not null,
    profile_id text not null default '',
    render_p integer not null,
    phrases bigint not null,
    rendered bigint not null,
    reused bigint not null,
    seconds double precision not null,
    audio_seconds double precision not null,
    real_time_factor double precision,
    memo_hit_rate double precision not null,
    recorded_at timestamptz not null default now(),
    primary key (run_id, profile_id, render_p)
);
alter table ops.render_stats add column if not exists profile_id text not null default '';
"""
    + _key_with_profile("ops.render_stats", "render_stats_pkey", "run_id, profile_id, render_p")
    + """create table if not exists ops.validation_results (
    run_id text not null,
    check_name text not null,
    checked bigint not null,
    failed bigint not null,
    passed boolean not null,
    seconds double precision not null,
    recorded_at timestamptz not null default now(),
    primary key (run_id, check_name)
);
create table if not exists ops.validation_failures (
    run_id text not null,
    check_name text not null,
    key text not null,
    reason text not null,
    primary key (run_id, check_name, key)
);
"""
)

# Created by the browser when it first numbers phrases (it may run before any pipeline task).
BROWSER_DDL = """
create schema if not exists browser;
create table if not exists browser.phrases (
    n bigint generated always as identity primary key,
    phrase_id text not null unique,
    content_hash text not null,
    midi_id text not null,
    song text,
    track_id text not null,
    track_index integer,
    bucket bigint not null,
    set_type text not null,
    n_notes integer not null,
    min_pitch integer not null,
    max_pitch integer not null,
    numbered_at timestamptz not null default now()
);
create index if not exists browser_phrases_content on browser.phrases (content_hash);
"""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the schemas and tables; mapped tasks call it concurrently, so the DDL runs
    under a transaction-scoped advisory lock (``if not exists`` alone can race)."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('dx7lake.ensure_schema'))")
        conn.execute(DDL)
