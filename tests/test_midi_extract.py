"""The bronze extract end to end: sources, quarantine, shards, incremental reruns."""

from __future__ import annotations

import io
import tarfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dx7lake.bronze import (
    BRONZE_SCHEMA,
    ExtractOptions,
    bronze_partitions,
    extract,
    extract_shard,
    merge_stats,
    midi_id_of,
    parse_midi,
    read_bronze_partition,
)
from dx7lake.lake import LocalLake, open_lake
from midi_files import END_OF_TRACK, smf

BAD = {
    "bad/garbage.mid": b"not midi at all",
    "bad/empty.mid": b"",
    "bad/truncated.mid": smf(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK)[:-3],
}


def all_rows(lake) -> pa.Table:
    tables = [read_bronze_partition(lake, p) for p in bronze_partitions(lake)]
    return pa.concat_tables(tables).sort_by("message_id") if tables else BRONZE_SCHEMA.empty_table()


def quarantine(lake) -> list[dict]:
    table = lake.read_parquet_prefix("bronze/quarantine")
    return [] if table is None else sorted(table.to_pylist(), key=lambda r: r["source_key"])


@pytest.fixture
def landing(tmp_path, chorales):
    """Six chorales in nested folders, three bad files and a byte-identical copy."""
    root = tmp_path / "landing"
    files = sorted(chorales.rglob("*.mid"))
    for i, f in enumerate(files):
        target = root / f"set{i % 2}" / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    for key, data in BAD.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    (root / "set1" / "zz copy of first.MID").write_bytes(files[0].read_bytes())
    (root / "notes.txt").write_text("ignored: not a MIDI suffix")
    return root


def test_extract_quarantines_with_reasons_and_counts(tmp_path, landing):
    lake = LocalLake(tmp_path / "lake")
    stats = extract(str(landing), lake).as_dict()
    assert stats["files_seen"] == 10
    assert (stats["files_extracted"], stats["files_quarantined"], stats["files_skipped"]) == (6, 3, 1)
    assert stats["duplicates"] == 1
    rows = all_rows(lake)
    assert rows.num_rows == stats["notes"] > 0
    assert rows.schema == BRONZE_SCHEMA
    assert len(set(rows.column("message_id").to_pylist())) == rows.num_rows
    assert pc.all(pc.equal(rows.column("p"), pc.utf8_slice_codeunits(rows.column("midi_id"), 0, 1))).as_py()
    reasons = {q["source_key"]: q["error"] for q in quarantine(lake)}
    assert reasons.keys() == BAD.keys()
    assert "not a MIDI file" in reasons["bad/garbage.mid"]
    assert reasons["bad/empty.mid"] == "empty file"
    assert "truncated" in reasons["bad/truncated.mid"]
    assert sum(stats["quarantine_reasons"].values()) == 3
    # every extracted file's rows carry the key it was found under
    assert {k.split("/")[0] for k in rows.column("source_key").to_pylist()} == {"set0", "set1"}


def test_rerun_adds_nothing_and_new_files_are_incremental(tmp_path, landing):
    lake = LocalLake(tmp_path / "lake")
    extract(str(landing), lake)
    keys = list(lake.list())
    again = extract(str(landing), lake)
    assert (again.files_seen, again.files_skipped, again.files_extracted, again.files_quarantined) == (10, 10, 0, 0)
    assert list(lake.list()) == keys
    new = smf(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK)
    (landing / "new.mid").write_bytes(new)
    third = extract(str(landing), lake)
    assert (third.files_extracted, third.files_skipped, third.notes) == (1, 10, 1)
    assert midi_id_of(new) in set(all_rows(lake).column("midi_id").to_pylist())


class RecordingLake(LocalLake):
    """A local lake that remembers every key it was asked for."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.read: list[str] = []

    def get(self, key: str) -> bytes:
        self.read.append(key)
        return super().get(key)


def test_a_rerun_reads_the_index_not_the_notes(tmp_path, landing):
    lake = RecordingLake(tmp_path / "lake")
    extract(str(landing), lake)
    lake.read.clear()
    extract(str(landing), lake)
    assert lake.read and all(k.startswith("bronze/index/") for k in lake.read)


def test_shards_share_the_work_and_add_up_to_one_pass(tmp_path, landing):
    whole, sharded = LocalLake(tmp_path / "whole"), LocalLake(tmp_path / "sharded")
    one = extract(str(landing), whole).as_dict()
    parts = [extract_shard(str(landing), sharded, shard=k, shards=3).as_dict() for k in range(3)]
    assert sum(1 for p in parts if p["files_seen"]) >= 2, "the work is spread"
    merged = merge_stats(parts)
    for key in ("files_seen", "files_extracted", "files_quarantined", "files_skipped", "duplicates", "notes"):
        assert merged[key] == one[key], key
    assert merged["partitions"] == one["partitions"] == bronze_partitions(whole)
    assert all_rows(sharded).equals(all_rows(whole))


def test_a_killed_batch_stays_invisible_and_is_cleaned_up(tmp_path, landing):
    lake = LocalLake(tmp_path / "lake")
    extract(str(landing), lake)
    before = all_rows(lake)
    p = bronze_partitions(lake)[0]
    # a data part whose index (the commit) was never written
    lake.put_parquet(f"bronze/detailed_notes/p={p}/part-0000000000000000.parquet", before.slice(0, 5))
    assert all_rows(lake).equals(before)
    extract(str(landing), lake)
    assert not lake.exists(f"bronze/detailed_notes/p={p}/part-0000000000000000.parquet")


def test_tar_gz_archive_is_read_as_a_stream(tmp_path, landing):
    archive = tmp_path / "lmd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(landing, arcname="lmd_full")
    folder_lake, tar_lake = LocalLake(tmp_path / "a"), LocalLake(tmp_path / "b")
    from_folder = extract(str(landing), folder_lake).as_dict()
    from_tar = extract(str(archive), tar_lake).as_dict()
    for key in ("files_seen", "files_extracted", "files_quarantined", "duplicates", "notes"):
        assert from_tar[key] == from_folder[key], key
    rows = all_rows(tar_lake)
    assert all(k.startswith("lmd_full/") for k in rows.column("source_key").to_pylist())
    assert rows.drop(["source_key"]).equals(all_rows(folder_lake).drop(["source_key"]))
    assert extract(str(archive), tar_lake).files_extracted == 0


def test_caps_and_split_are_configurable(tmp_path, landing):
    from dx7lake.config import load_settings

    options = ExtractOptions.from_settings(
        load_settings(env={"DX7LAKE_MAX_FILE_BYTES": "4000", "DX7LAKE_SPLIT": "0,0,1"})
    )
    lake = LocalLake(tmp_path / "lake")
    stats = extract(str(landing), lake, options)
    big = [q for q in quarantine(lake) if "size cap" in q["error"]]
    assert big and stats.files_extracted + len(big) == 6
    assert set(all_rows(lake).column("set_type").to_pylist()) <= {"validate"}
    with pytest.raises(ValueError, match="three"):
        load_settings(env={"DX7LAKE_SPLIT": "80,10"})


def _lakh_part(tables: list[pa.Table]) -> bytes:
    lakh_columns = ["midi_id", "track_id", "message_id", "start_time", "duration", "velocity", "note", "set_type"]
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(tables).select(lakh_columns), buf)
    return buf.getvalue()


def test_lakh_detailed_notes_parquet_is_checked_and_passed_through(tmp_path, chorales):
    files = sorted(chorales.rglob("*.mid"))
    songs = [parse_midi(f.read_bytes(), f.name) for f in files[:3]]
    root = tmp_path / "midi_etl"
    for song in songs:
        p = song.column("p")[0].as_py()
        (root / "detailed_notes" / f"p={p}").mkdir(parents=True, exist_ok=True)
    good = songs[0]
    broken = songs[1].set_column(6, "note", pa.array([200] * songs[1].num_rows, pa.int64()))
    p0, p1 = good.column("p")[0].as_py(), broken.column("p")[0].as_py()
    (root / "detailed_notes" / f"p={p0}" / "data_0.parquet").write_bytes(_lakh_part([good]))
    (root / "detailed_notes" / f"p={p1}" / "data_1.parquet").write_bytes(_lakh_part([broken]))
    (root / "detailed_notes" / f"p={p0}" / "data_9.parquet").write_bytes(b"PAR1 not really")
    wrong = io.BytesIO()
    pq.write_table(pa.table({"midi_id": ["x"], "pitch": [60]}), wrong)
    (root / "detailed_notes" / f"p={p0}" / "data_8.parquet").write_bytes(wrong.getvalue())

    lake = LocalLake(tmp_path / "lake")
    stats = extract(str(root), lake)
    assert (stats.files_extracted, stats.files_quarantined, stats.notes) == (1, 3, good.num_rows)
    rows = all_rows(lake)
    lakh = ["midi_id", "track_id", "message_id", "start_time", "duration", "velocity", "note", "set_type", "p"]
    assert rows.select(lakh).equals(good.sort_by("message_id").select(lakh))
    assert rows.column("start_seconds").null_count == rows.num_rows  # no tempo map upstream
    errors = " | ".join(q["error"] for q in quarantine(lake))
    assert "note outside 0..127" in errors and "not a parquet file" in errors and "missing columns" in errors
    assert extract(str(root), lake).files_extracted == 0


@pytest.fixture
def s3(s3_env):
    """A bucket on the session's moto server (a real S3 protocol endpoint, over HTTP)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env)
    client.create_bucket(Bucket="corpus")
    return client


def test_s3_source_into_an_s3_lake(s3, landing):
    for path in sorted(landing.rglob("*")):
        if path.is_file():
            key = f"landing/{path.relative_to(landing).as_posix()}"
            s3.put_object(Bucket="corpus", Key=key, Body=path.read_bytes())
    lake = open_lake("s3://corpus/lake")
    stats = extract("s3://corpus/landing", lake)
    assert (stats.files_seen, stats.files_extracted, stats.files_quarantined, stats.duplicates) == (10, 6, 3, 1)
    rows = all_rows(lake)
    assert rows.num_rows == stats.notes > 0
    assert "set0/" in rows.column("source_key")[0].as_py() or "set1/" in rows.column("source_key")[0].as_py()
    assert extract("s3://corpus/landing", lake).files_extracted == 0


def test_dag_maps_extract_over_shards_and_merges_counts_for_the_summary():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from conftest import REPO

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["dx7lake"]
    assert isinstance(dag.get_task("extract"), MappedOperator)
    merge = dag.get_task("merge_extract")
    assert merge.upstream_task_ids == {"extract"}
    assert {"summary", "bronze_partitions"} <= merge.downstream_task_ids
    assert [a.name for a in merge.outlets] == ["dx7lake_bronze"]
    assert dag.params["extract_shards"] == 4


def test_a_file_without_notes_is_extracted_empty_not_quarantined(tmp_path):
    """Quarantine means "could not be read": a tempo map alone is read fine and has 0 notes."""
    landing = tmp_path / "landing"
    landing.mkdir()
    tempo_only = smf(b"\x00\xff\x51\x03\x07\xa1\x20" + END_OF_TRACK)
    (landing / "tempo_only.mid").write_bytes(tempo_only)
    (landing / "one_note.mid").write_bytes(smf(b"\x00\x90\x3c\x40\x60\x80\x3c\x00" + END_OF_TRACK))
    lake = LocalLake(tmp_path / "lake")
    stats = extract(str(landing), lake)
    assert (stats.files_extracted, stats.files_empty, stats.files_quarantined, stats.notes) == (2, 1, 0, 1)
    assert quarantine(lake) == []
    assert midi_id_of(tempo_only) not in set(all_rows(lake).column("midi_id").to_pylist())
    index = lake.read_parquet_prefix("bronze/index").to_pylist()
    empty = {"midi_id": midi_id_of(tempo_only), "source_key": "tempo_only.mid", "status": "extracted", "notes": 0}
    assert empty in index
    again = extract(str(landing), lake)  # it is known: a rerun skips it
    assert (again.files_skipped, again.files_empty) == (2, 0)
