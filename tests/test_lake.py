"""The lake interface on its local backend."""

from __future__ import annotations

import pyarrow as pa
import pytest

from dx7lake.lake import LocalLake, S3Lake, open_lake


def test_local_roundtrip_list_delete(tmp_path):
    lake = open_lake(str(tmp_path))
    lake.put("a/b/one.bin", b"1")
    lake.put("a/two.bin", b"22")
    lake.put("c.bin", b"333")
    assert lake.get("a/b/one.bin") == b"1"
    assert list(lake.list("a/")) == ["a/b/one.bin", "a/two.bin"]
    assert lake.exists("c.bin") and not lake.exists("nope")
    lake.delete("c.bin")
    assert not lake.exists("c.bin")
    with pytest.raises(KeyError):
        lake.get("c.bin")


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    lake = LocalLake(tmp_path)
    lake.put("k", b"old")
    lake.put("k", b"new")
    assert lake.get("k") == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


@pytest.mark.parametrize("key", ["", "/abs", "../escape", "a/../b", "a//b", "./x"])
def test_keys_cannot_escape_the_lake(tmp_path, key):
    with pytest.raises(ValueError):
        LocalLake(tmp_path).put(key, b"x")


def test_parquet_helpers(tmp_path):
    lake = LocalLake(tmp_path)
    lake.put_parquet("t/p=1/a.parquet", pa.table({"x": [1, 2]}))
    lake.put_parquet("t/p=1/b.parquet", pa.table({"x": [3]}))
    assert lake.read_parquet_prefix("t/p=1/").column("x").to_pylist() == [1, 2, 3]
    assert lake.read_parquet_prefix("t/p=2/") is None


def test_open_lake_uris(tmp_path):
    assert isinstance(open_lake(f"file://{tmp_path}"), LocalLake)
    s3 = open_lake("s3://bucket/some/prefix")
    assert isinstance(s3, S3Lake) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    with pytest.raises(ValueError):
        open_lake("ftp://host/x")


def test_list_walks_only_the_prefix_folder(tmp_path, monkeypatch):
    lake = LocalLake(tmp_path)
    for key in ("gold/a/1.flac", "gold/a/2.flac", "gold/b/3.flac", "bronze/x.parquet", "bronze_other/y"):
        lake.put(key, b"x")
    walked = []
    real_rglob = type(tmp_path).rglob
    monkeypatch.setattr(type(tmp_path), "rglob", lambda self, pattern: walked.append(self) or real_rglob(self, pattern))
    assert list(lake.list("gold/a/")) == ["gold/a/1.flac", "gold/a/2.flac"]
    assert walked == [tmp_path / "gold" / "a"]
    assert list(lake.list("bronze")) == ["bronze/x.parquet", "bronze_other/y"]  # a bare name prefix still works
    assert list(lake.list("gold/a/1")) == ["gold/a/1.flac"]
    assert list(lake.list("missing/")) == []
