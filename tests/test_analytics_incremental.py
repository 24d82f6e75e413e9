"""The analytics marts, incremental: songs A, build; songs B (more files in old and new
partitions, and a new train song that claims a content older test songs played), build again.
Every mart must equal, row for row, both a ``--full-refresh`` build on A + B and the mart's
plain definition evaluated straight on the notes and phrases (the SQL they had before they
were incremental, independent of the per-file and per-size tables they now sum)."""

from __future__ import annotations

import psycopg
from test_silver import hand_song

from bench.synthetic import partitions, synthetic_notes
from dx7lake.warehouse import load as warehouse
from dx7lake.warehouse import schema
from dx7lake.warehouse.transform import run_dbt

# each mart's definition on the whole of silver: what the incremental marts must stay equal to
DEFINITIONS = {
    "notes_by_split_program": """
        select song_set_type, coalesce(program, 0), is_drum, count(*), count(distinct track_id),
               count(distinct midi_id)
        from staging.stg_detailed_notes group by 1, 2, 3""",
    "pitch_distribution": """
        select song_set_type, pitch, count(*) from staging.stg_detailed_notes where not is_drum group by 1, 2""",
    "velocity_distribution": """
        select song_set_type, velocity, count(*) from staging.stg_detailed_notes where not is_drum group by 1, 2""",
    "phrase_density": """
        select set_type, n_notes, count(*), count(*)::double precision / sum(count(*)) over (partition by set_type)
        from silver.phrases group by 1, 2""",
    "dedup_ratio": """
        select set_type, count(*), count(distinct content_hash),
               1 - count(distinct content_hash)::double precision / count(*)
        from silver.phrases group by 1
        union all
        select 'all', count(*), count(distinct content_hash),
               1 - count(distinct content_hash)::double precision / count(*)
        from silver.phrases""",
    "rejected_by_reason": """
        select reason, count(*), count(distinct content_hash) from silver.rejected_phrases group by 1""",
}
COLUMNS = {
    "notes_by_split_program": "set_type, program, is_drum, n_notes, n_tracks, n_files",
    "pitch_distribution": "set_type, pitch, n_notes",
    "velocity_distribution": "set_type, velocity, n_notes",
    "phrase_density": "set_type, n_notes, n_phrases, share_of_split",
    "dedup_ratio": "set_type, n_phrases, unique_contents, dedup_ratio",
    "rejected_by_reason": "reason, n_phrases, n_contents",
}
PARTIALS = (
    "int_file_programs",
    "int_file_pitches",
    "int_file_velocities",
    "int_contents_by_size",
    "int_rejected_contents",
)


def marts(conn: psycopg.Connection) -> dict[str, set[tuple]]:
    """Every mart as a set of rows; floats rounded to 12 places (the sums run in another order)."""

    def row(r: tuple) -> tuple:
        return tuple(round(v, 12) if isinstance(v, float) else v for v in r)

    return {
        name: {row(r) for r in conn.execute(f"select {cols} from analytics.{name}")} for name, cols in COLUMNS.items()
    }


def definitions(conn: psycopg.Connection) -> dict[str, set[tuple]]:
    return {
        name: {tuple(round(v, 12) if isinstance(v, float) else v for v in r) for r in conn.execute(sql)}
        for name, sql in DEFINITIONS.items()
    }


def partials(conn: psycopg.Connection) -> dict[str, set[tuple]]:
    """The per-file and per-size tables, but for when they were written."""
    out = {}
    for name in PARTIALS:
        cols = [
            c
            for (c,) in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'analytics'"
                " and table_name = %s and column_name <> 'built_at' order by 1",
                (name,),
            )
        ]
        out[name] = set(conn.execute(f"select {', '.join(cols)} from analytics.{name}").fetchall())
    return out


def test_incremental_marts_equal_a_full_refresh_and_their_definition_after_a_split_move(pg_url):
    first, second = synthetic_notes(96, motifs=60), synthetic_notes(96, motifs=60, seed=1)
    old, new = partitions(first), partitions(second)
    keep, grow, add = ["0", "1", "2"], ["d", "3"], "f"
    # a test song plays an 11-note chord, the only content of that size: a train song of B
    # claims it, so the (test, 11) group of phrase_density must go and (train, 11) appear
    chord = [(0.0, 1.0, 80, 40 + 2 * i) for i in range(11)]
    # a zero-length note sets a content aside (note_too_short) in A and again in B, so B's build
    # recounts an old rejected content; B alone holds a stuck note (note_too_long)
    short = [(0.0, 0.0, 70, 64), (0.5, 1.0, 70, 65)]
    test_song = hand_song("marts-T", "test", [*chord, (4.0, 1.0, 70, 62), *[(s + 12, d, v, n) for s, d, v, n in short]])
    train_song = hand_song(
        "marts-R",
        "train",
        [
            *[(s + 8, d, v, n) for s, d, v, n in chord],
            *[(s + 20, d, v, n) for s, d, v, n in short],
            (24.0, 300.0, 70, 60),
        ],
    )
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p in [*keep, *grow]:
            warehouse.load_bronze_part(conn, p, "part-a", old[p], "run-1")
        p = test_song.column("midi_id")[0].as_py()[0]
        warehouse.load_bronze_part(conn, p, "part-hand-a", test_song, "run-1")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        before = marts(conn)
        assert before == definitions(conn)
        assert ("test", 11) in {r[:2] for r in before["phrase_density"]}
        assert before["rejected_by_reason"] == {("note_too_short", 1, 1)}
        for p in [*grow, add]:
            warehouse.load_bronze_part(conn, p, "part-b", new[p], "run-2")
        p = train_song.column("midi_id")[0].as_py()[0]
        warehouse.load_bronze_part(conn, p, "part-hand-b", train_song, "run-2")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        incremental, incremental_partials = marts(conn), partials(conn)
        expected = definitions(conn)
        moved = warehouse.scalar(conn, "select coalesce(sum(n_phrases), 0) from silver.split_moves")
    run_dbt(["build", "--quiet", "--full-refresh"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        full, full_partials = marts(conn), partials(conn)

    assert moved > 0
    sizes = {r[:2] for r in incremental["phrase_density"]}
    assert ("test", 11) not in sizes and ("train", 11) in sizes
    assert incremental["rejected_by_reason"] == {("note_too_short", 2, 1), ("note_too_long", 1, 1)}
    assert all(incremental.values()) and incremental != before
    for name in COLUMNS:
        assert incremental[name] == expected[name], name
        assert incremental[name] == full[name], name
    assert incremental_partials == full_partials


INCREMENTAL_TABLES = """
    select c.oid, n.nspname || '.' || c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where (n.nspname, c.relname) in (('intermediate', 'int_phrases'), ('silver', 'phrases'),
        ('silver', 'phrase_contents'), ('silver', 'phrase_stats'), ('silver', 'track_summary'),
        ('silver', 'song_summary'), ('analytics', 'pitch_distribution'), ('analytics', 'velocity_distribution'),
        ('analytics', 'notes_by_split_program'), ('analytics', 'int_file_pitches'),
        ('analytics', 'int_file_velocities'), ('analytics', 'int_file_programs'),
        ('analytics', 'int_contents_by_size'), ('analytics', 'int_rejected_contents'))"""


def test_a_warehouse_from_before_the_incremental_models_upgrades_on_its_next_build(pg_url):
    """Tables built before their model was incremental lack the columns its incremental logic
    reads back (built_at, loaded_at): the next plain build drops and rebuilds those (dbt's
    on-run-start hook), equal to their definitions, and leaves every current table in place
    (the same table: its oid is kept), so a current warehouse pays nothing."""
    with psycopg.connect(pg_url) as conn:
        schema.ensure_schema(conn)
        for p, part in partitions(synthetic_notes(48, motifs=30)).items():
            warehouse.load_bronze_part(conn, p, "part-a", part, "run-1")
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        current = dict(conn.execute(INCREMENTAL_TABLES).fetchall())
        assert len(current) == 14  # every incremental model's table
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        assert dict(conn.execute(INCREMENTAL_TABLES).fetchall()) == current  # nothing dropped
        # as the models' tables were before: no built_at on the marts, no loaded_at on track_summary
        conn.execute("alter table analytics.pitch_distribution drop column built_at")
        conn.execute("alter table analytics.velocity_distribution drop column built_at")
        conn.execute("alter table silver.track_summary drop column loaded_at")
        tracks = conn.execute("select count(*) from silver.track_summary").fetchone()
    run_dbt(["build", "--quiet"], url=pg_url)
    with psycopg.connect(pg_url) as conn:
        after = dict(conn.execute(INCREMENTAL_TABLES).fetchall())
        rebuilt = {name for oid, name in current.items() if oid not in after}
        assert rebuilt == {"analytics.pitch_distribution", "analytics.velocity_distribution", "silver.track_summary"}
        got, expected = marts(conn), definitions(conn)
        for name in ("pitch_distribution", "velocity_distribution"):
            assert got[name] == expected[name], name
        assert conn.execute("select count(*), count(loaded_at) from silver.track_summary").fetchone() == tracks * 2
