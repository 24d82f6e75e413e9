"""The browser on an S3 lake (moto's S3 server over HTTP): the same pages and audio as locally."""

from __future__ import annotations

import dataclasses
import re

import boto3
from fastapi.testclient import TestClient

from dx7lake.browser.app import create_app
from dx7lake.lake import open_lake


def test_browser_reads_gold_from_s3(rendered_home, s3_env):
    local = open_lake(rendered_home.lake_uri)
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket="lake")
    remote = open_lake("s3://lake/dx7")
    for key in local.list("gold/"):
        remote.put(key, local.get(key))
    on_s3 = dataclasses.replace(rendered_home, lake_uri="s3://lake/dx7")
    with TestClient(create_app(on_s3)) as client, TestClient(create_app(rendered_home)) as local_client:
        page = client.get("/phrases/5")
        assert page.status_code == 200
        src = re.search(r'<audio id="player"[^>]* src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        audio = client.get(src, headers={"Range": "bytes=0-3"})
        assert audio.status_code == 206 and audio.content == b"fLaC"
        assert client.get(src).content == local_client.get(src).content
        assert client.get(src.replace("audio.flac", "mel.png")).headers["content-type"] == "image/png"
