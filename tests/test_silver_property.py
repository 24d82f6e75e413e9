"""Property: any note table real music can produce goes through load + dbt + render.

Hypothesis draws adversarial bronze tables: starts on 89- and 15,360-tick grids,
zero-length notes, one-tick notes, notes held hundreds of beats, pitches 0 and 127,
velocity 1, 128-note chords, hundreds of notes in one window, drum-only tracks. For each:

- ``dbt build`` passes: every data test holds on legitimate music (it raises otherwise);
- silver equals the written rule recomputed in Python (test_silver's reading plus the
  render rules): the kept contents, the rejected ones with their reason, the polyphony;
- kept contents render, through the engine, to audio that passes audio QA (audible,
  unclipped, the right length): a rule that keeps what the engine cannot sound fails here.
"""

from __future__ import annotations

import hashlib

import psycopg
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_silver import max_polyphony, python_phrases

from bench.synthetic import partitions
from conftest import REPO, new_database
from dx7lake.bronze import BRONZE_SCHEMA, set_type_of
from dx7lake.warehouse import load, schema
from dx7lake.warehouse.transform import run_dbt

RULES = yaml.safe_load((REPO / "dbt" / "dbt_project.yml").read_text())["vars"]
TICKS = st.sampled_from([89, 96, 480, 15_360])
PITCH = st.one_of(st.sampled_from([0, 1, 126, 127]), st.integers(0, 127))
VELOCITY = st.one_of(st.sampled_from([1, 127]), st.integers(1, 127))


@st.composite
def durations(draw, tpb: int) -> float:
    """Zero, one tick, ordinary, or held for hundreds of beats."""
    kind = draw(st.sampled_from(["zero", "tick", "ordinary", "held"]))
    if kind == "zero":
        return 0.0
    if kind == "tick":
        return 1 / tpb
    if kind == "held":
        return draw(st.integers(100 * tpb, 400 * tpb)) / tpb
    return draw(st.integers(1, 8 * tpb)) / tpb


@st.composite
def tracks(draw) -> tuple[bool, list[tuple[float, float, int, int]]]:
    """(is drum, notes as (start beats, duration beats, velocity, pitch)) of one track."""
    tpb = draw(TICKS)
    notes = []
    for _ in range(draw(st.integers(1, 4))):  # a few events per track, each a shape
        start_tick = draw(st.integers(0, 16 * tpb))
        shape = draw(st.sampled_from(["note", "chord", "burst"]))
        if shape == "note":
            notes.append((start_tick / tpb, draw(durations(tpb)), draw(VELOCITY), draw(PITCH)))
        elif shape == "chord":  # up to every MIDI pitch at once
            size = draw(st.sampled_from([2, 16, 128]))
            duration, velocity = draw(durations(tpb)), draw(VELOCITY)
            notes += [(start_tick / tpb, duration, velocity, pitch) for pitch in range(128 - size, 128)]
        else:  # hundreds of notes inside one window, one or two ticks apart
            size = draw(st.integers(100, 300))
            step = draw(st.integers(1, 2))
            pitch, velocity = draw(PITCH), draw(VELOCITY)
            notes += [((start_tick + i * step) / tpb, 1 / tpb, velocity, pitch) for i in range(size)]
    return draw(st.booleans()), notes


def bronze_table(songs: list[list[tuple[bool, list]]]) -> pa.Table:
    """Bronze rows of drawn songs (a song is a list of tracks)."""
    rows = []
    for s, song in enumerate(songs):
        midi_id = hashlib.md5(f"property:{s}:{song!r}".encode()).hexdigest()
        for t, (is_drum, notes) in enumerate(song):
            track_id = hashlib.blake2b(f"{midi_id}:{t}".encode(), digest_size=8).hexdigest()
            for i, (start, duration, velocity, pitch) in enumerate(notes):
                rows.append(
                    {
                        "midi_id": midi_id,
                        "track_id": track_id,
                        "message_id": f"{track_id}{i:08x}",
                        "start_time": start,
                        "duration": duration,
                        "velocity": velocity,
                        "note": pitch,
                        "set_type": set_type_of(midi_id),
                        "p": midi_id[0],
                        "channel": 9 if is_drum else t % 9,
                        "program": 0,
                        "is_drum": is_drum,
                        "track_index": t,
                        "start_seconds": start * 0.5,
                        "duration_seconds": duration * 0.5,
                        "source_key": f"property/{s}.mid",
                    }
                )
    return pa.Table.from_pylist(rows, schema=BRONZE_SCHEMA)


def reject_reason(n_notes: int, pitches: list[int], durations_cb: list[int]) -> str | None:
    """The render rules of dbt_project.yml, in the order rejected_phrases applies them."""
    if n_notes > RULES["max_notes_per_phrase"]:
        return "too_many_notes"
    if min(pitches) < RULES["render_pitch_min"] or max(pitches) > RULES["render_pitch_max"]:
        return "pitch_out_of_range"
    if min(durations_cb) / 100 < RULES["min_note_beats"]:
        return "note_too_short"
    if max(durations_cb) / 100 > RULES["max_note_beats"]:
        return "note_too_long"
    return None


# every oddity at once, so each run covers them whatever hypothesis draws: a 128-note chord,
# 300 notes one tick apart at 89 ticks per beat, a zero-length note at pitch 0 and velocity 1,
# a note held 300 beats, the quietest shortest notes at both ends of the keyboard, drums
ODDITIES = [
    [
        (
            False,
            [(0.0, 1.0, 1 + p % 127, p) for p in range(128)]
            + [(4 + i / 89, 1 / 89, 64, 60) for i in range(300)]
            + [(8.0, 0.0, 1, 0), (12 + 1 / 15_360, 300.0, 127, 127)],
        ),
        (True, [(0.0, 0.25, 100, 36), (0.5, 0.0, 100, 42)]),
        (False, [(0.0, 1 / 89, 1, 0), (2.0, 1 / 89, 1, 127)]),
    ]
]


@pytest.mark.e2e
@example(songs=ODDITIES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(songs=st.lists(st.lists(tracks(), min_size=1, max_size=4), min_size=1, max_size=3))
def test_adversarial_note_tables_build_and_render(pg_server, songs):
    from dx7lake.gold.engine import RenderSpec
    from dx7lake.gold.patches import choose_voices
    from dx7lake.gold.render import PhraseRenderer
    from dx7lake.quality import audio_qa

    table = bronze_table(songs)
    url = new_database(pg_server, "prop")
    with psycopg.connect(url) as conn:
        schema.ensure_schema(conn)
        for p, part in partitions(table).items():
            load.load_bronze_part(conn, p, "part-property", part, "property")
    run_dbt(["build", "--quiet", "--exclude", "path:models/analytics"], url=url)  # raises on any failing test

    expected = python_phrases(table.to_pylist())
    notes_of = {phrase["content_hash"]: phrase["notes"] for phrase in expected.values()}
    reasons = {h: reject_reason(len(n), [x[3] for x in n], [x[1] for x in n]) for h, n in notes_of.items()}
    with psycopg.connect(url) as conn:
        kept = {
            h: (n, notes)
            for h, n, notes in conn.execute("select content_hash, n_notes, notes from silver.phrase_contents")
        }
        rejected = dict(conn.execute("select distinct content_hash, reason from silver.rejected_phrases").fetchall())
        polyphony = dict(conn.execute("select content_hash, max(max_polyphony) from silver.phrase_stats group by 1"))
    assert set(kept) == {h for h, r in reasons.items() if r is None}
    assert rejected == {h: r for h, r in reasons.items() if r is not None}
    assert polyphony == {h: max_polyphony(notes_of[h]) for h in kept}

    # the densest kept content, and a few more, through the engine and audio QA
    spec = RenderSpec()
    renderer = PhraseRenderer(spec)
    voice = choose_voices("epiano")[0]
    for content_hash in sorted(kept, key=lambda h: (-kept[h][0], h))[:4]:
        notes = [(float(s), float(d), int(v), int(n)) for s, d, v, n in kept[content_hash][1]]
        flac, row = renderer.render(voice, content_hash, notes)
        assert audio_qa.check_render(flac, row) == [], (content_hash, notes[:5])
