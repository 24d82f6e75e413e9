"""The lake interface on its S3 backend, over HTTP against moto's server (a real S3 endpoint)."""

from __future__ import annotations

import json
import os

import pytest

from dx7lake.config import load_settings
from dx7lake.lake import LakeError, LocalLake, S3Lake, open_lake


def _fill(lake) -> None:
    lake.put("a/b/one.bin", b"1")
    lake.put("a/two.bin", b"22")
    lake.put("ab.bin", b"4444")
    lake.put("c.bin", b"333")


def test_roundtrip_list_delete(s3_lake_uri):
    lake = open_lake(s3_lake_uri)
    assert isinstance(lake, S3Lake)
    _fill(lake)
    assert lake.get("a/b/one.bin") == b"1"
    assert lake.exists("c.bin") and not lake.exists("nope")
    lake.delete("c.bin")
    assert not lake.exists("c.bin")
    with pytest.raises(KeyError):
        lake.get("c.bin")


@pytest.mark.parametrize("prefix", ["", "a/", "a", "a/b/", "zz/"])
def test_lists_exactly_as_the_local_lake(s3_lake_uri, tmp_path, prefix):
    s3, local = open_lake(s3_lake_uri), LocalLake(tmp_path)
    _fill(s3)
    _fill(local)
    assert list(s3.list(prefix)) == list(local.list(prefix))


def test_listing_pages_past_a_thousand_keys(s3_lake_uri):
    lake = open_lake(s3_lake_uri)
    keys = [f"many/{i:04d}.bin" for i in range(1005)]
    for key in keys:
        lake.put(key, b"")
    assert list(lake.list("many/")) == keys


def test_prefixes_in_one_bucket_are_separate_lakes(s3_lake_uri):
    first = open_lake(s3_lake_uri)
    second = open_lake(s3_lake_uri.removesuffix("/lake") + "/other")
    whole = open_lake(s3_lake_uri.removesuffix("/lake"))
    first.put("k.bin", b"first")
    second.put("k.bin", b"second")
    assert first.get("k.bin") == b"first" and list(second.list()) == ["k.bin"]
    assert list(whole.list()) == ["lake/k.bin", "other/k.bin"]


@pytest.mark.parametrize("key", ["", "/abs", "../escape", "a/../b", "a//b", "./x"])
def test_keys_cannot_escape_the_prefix(s3_lake_uri, key):
    with pytest.raises(ValueError):
        open_lake(s3_lake_uri).put(key, b"x")


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "s3://bucket/a/../b"])
def test_bad_uris_are_refused(uri):
    with pytest.raises(ValueError):
        open_lake(uri)


def test_a_missing_bucket_is_named(s3_lake_uri):
    lake = open_lake("s3://dx7lake-no-such-bucket/lake")
    with pytest.raises(LakeError, match="dx7lake-no-such-bucket"):
        lake.put("k.bin", b"x")
    with pytest.raises(LakeError, match="does not exist"):
        list(lake.list())


def test_the_endpoint_comes_from_the_aws_default_connection(s3_lake_uri, moto_s3, monkeypatch):
    assert open_lake(s3_lake_uri).client.meta.endpoint_url == moto_s3
    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_DX7_OTHER", json.dumps({**conn, "extra": {"region_name": "eu-west-1"}}))
    client = open_lake(s3_lake_uri, load_settings(env={"DX7LAKE_AWS_CONN_ID": "dx7_other"}).aws_conn_id).client
    assert client.meta.endpoint_url != moto_s3 and client.meta.region_name == "eu-west-1"


def test_ensure_bucket_creates_once(moto_s3, s3_lake_uri):
    lake = open_lake(s3_lake_uri.replace("s3://", "s3://new-").removesuffix("/lake") + "/lake")
    assert lake.ensure_bucket() is True
    assert lake.ensure_bucket() is False
    lake.put("k.bin", b"x")
    assert list(lake.list()) == ["k.bin"]


def test_ensure_bucket_waits_for_the_endpoint_then_gives_up(monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1"},
            }
        ),
    )
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(EndpointConnectionError):
        open_lake("s3://dx7lake-unreachable/lake").ensure_bucket(attempts=2, wait_s=0)


def test_refused_credentials_name_the_lake(s3_lake_uri, monkeypatch):
    """moto's server checks credentials once its no-auth allowance is 0: "testing" is then unknown."""
    from moto import settings as moto_settings

    lake = open_lake(s3_lake_uri)
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(LakeError, match=r"refused \(InvalidAccessKeyId\)"):
        lake.put("k.bin", b"x")
