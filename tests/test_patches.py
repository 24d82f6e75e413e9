"""DX7 voices: the built-in bank, .syx banks and single voices, and how patches are chosen."""

from __future__ import annotations

import pytest
from dexed import Patch

from dx7lake.gold.patches import BUILTIN, Voice, builtin_voices, choose_voices, load_syx, patch_id_of
from dx7lake.gold.vst3 import voice_sysex


def bank_patches() -> list[Patch]:
    """32 distinct voices derived from the built-ins (no factory data)."""
    patches = []
    for i in range(32):
        patch = Patch.from_sysex(builtin_voices()[i % len(BUILTIN)].vced)
        patch.name = f"TEST {i:02d}"
        patch.op[0].output_level = 60 + i
        patches.append(patch)
    return patches


@pytest.fixture
def bank(tmp_path):
    path = tmp_path / "bank.syx"
    Patch.save_to_bank(str(path), bank_patches())
    return path


def test_builtin_voices_are_distinct_156_byte_voices_with_stable_ids():
    voices = builtin_voices()
    assert [v.name for v in voices] == list(BUILTIN)
    assert all(len(v.vced) == 156 for v in voices)
    assert len({v.patch_id for v in voices}) == len(voices)
    assert [v.patch_id for v in builtin_voices()] == [v.patch_id for v in voices]
    assert voices[0].patch_id == patch_id_of(voices[0].vced) and len(voices[0].patch_id) == 12


def test_a_32_voice_bank_loads_every_voice(bank):
    voices = load_syx(bank)
    assert len(voices) == 32
    assert [v.name for v in voices[:2]] == ["TEST 00", "TEST 01"]
    assert [v.vced for v in voices] == [p.to_sysex() for p in bank_patches()]


def test_a_single_voice_dump_loads(tmp_path):
    voice = builtin_voices()[1]
    path = tmp_path / "one.syx"
    path.write_bytes(voice_sysex(voice))
    (loaded,) = load_syx(path)
    assert loaded.patch_id == voice.patch_id and loaded.name == "DX7L EPNO"


@pytest.mark.parametrize("data", [b"", b"\xf0\x43\x00\x00\x01\x1b\x01\x02\xf7", b"x" * 100])
def test_a_file_that_is_not_dx7_sysex_is_a_clear_error(tmp_path, data):
    path = tmp_path / "bad.syx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not a DX7"):
        load_syx(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_syx(tmp_path / "missing.syx")


def test_patches_are_chosen_by_name_or_id_in_order():
    sine, epiano = choose_voices("sine,epiano")
    assert (sine.name, epiano.name) == ("sine", "epiano")
    assert choose_voices(f"{epiano.patch_id}, sine") == [epiano, sine]
    assert choose_voices("sine,sine") == [sine]
    assert choose_voices(None) == builtin_voices()


def test_random_picks_are_seeded_distinct_and_from_the_bank(bank):
    from dx7lake.config import load_settings
    from dx7lake.stages import voices_of

    settings = load_settings(env={"DX7LAKE_SYX": str(bank)})
    picks = voices_of(settings, "random:5:7")
    assert len({v.patch_id for v in picks}) == 5
    assert all(v.name.startswith("TEST") for v in picks)
    assert voices_of(settings, "random:5:7") == picks
    assert voices_of(settings, "random:5:8") != picks
    assert voices_of(settings, "TEST 03")[0].vced == bank_patches()[3].to_sysex()
    assert voices_of(settings, "random:3") == voices_of(settings, "random:3:0")


def test_random_picks_without_banks_come_from_the_builtins():
    picks = choose_voices("random:2:1")
    assert {v.name for v in picks} <= set(BUILTIN) and len(picks) == 2


def test_banks_can_be_passed_directly_and_folders_are_searched(bank):
    voices = choose_voices("random:32", banks=load_syx(bank))
    assert len(voices) == 32
    from dx7lake.gold.patches import bank_voices

    assert [v.vced for v in bank_voices([bank.parent])] == [v.vced for v in load_syx(bank)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nope", "unknown patch 'nope'"), ("random:x", "use random:K"), ("random:9", "cannot pick 9"), ("random:0", "0")],
)
def test_bad_patch_choices_are_clear_errors(spec, message, monkeypatch):
    monkeypatch.delenv("DX7LAKE_SYX", raising=False)
    with pytest.raises(ValueError, match=message):
        choose_voices(spec)


def test_a_name_shared_by_two_voices_must_be_chosen_by_id():
    a = Voice("TWIN", builtin_voices()[0].vced)
    b = Voice("TWIN", builtin_voices()[1].vced)
    with pytest.raises(ValueError, match="several voices"):
        choose_voices("TWIN", banks=[a, b])
    assert choose_voices(b.patch_id, banks=[a, b]) == [b]
