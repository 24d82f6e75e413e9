"""The lake: one key/value interface over a local folder or an S3 prefix.

Business code asks for bytes by key and never builds file paths or calls boto3, so the
same pipeline runs on the embedded folder and on S3. Keys are ``/``-separated relative
paths such as ``bronze/detailed_notes/p=a/<midi_id>.parquet``. Writes are atomic: a
reader sees either the whole object or nothing (temp file + rename locally; S3 PUTs are
atomic by nature).
"""

from __future__ import annotations

import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq


class Lake(ABC):
    """Bytes by key, plus parquet helpers built on them."""

    uri: str

    @abstractmethod
    def get(self, key: str) -> bytes: ...

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def put_parquet(self, key: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.put(key, buf.getvalue())

    def read_parquet(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.get(key)))

    def read_parquet_prefix(self, prefix: str) -> pa.Table | None:
        """Concatenate every parquet object under ``prefix`` (None when there is none)."""
        tables = [self.read_parquet(k) for k in self.list(prefix) if k.endswith(".parquet")]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid lake key: {key!r}")
    return key


class LocalLake(Lake):
    """A folder on disk: the embedded default."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self.root
        if not base.exists():
            return iter(())
        keys = (
            p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
        )
        return iter(sorted(k for k in keys if k.startswith(prefix)))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Lake(Lake):
    """An S3 prefix, reached through the Airflow amazon provider's S3Hook when available.

    The hook reads the ``aws_default`` connection, whose extra may set ``endpoint_url``
    for S3-compatible stores; outside Airflow a plain boto3 client honours
    ``AWS_ENDPOINT_URL``.
    """

    def __init__(self, uri: str, client=None) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = _s3_client()
        return self._client

    def _k(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._k(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._k(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._k(key))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str = "") -> Iterator[str]:
        full = self._k(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        if prefix and prefix.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return iter(sorted(keys))

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._k(key))


def _s3_client():
    """boto3 S3 client: the Airflow ``aws_default`` connection if Airflow can give one."""
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=os.environ.get("DX7LAKE_AWS_CONN_ID", "aws_default")).get_conn()
    except Exception:  # no Airflow connection configured: fall back to the environment
        import boto3

        return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def open_lake(uri: str) -> Lake:
    """Open a lake named by ``/dir``, ``file:///dir`` or ``s3://bucket/prefix``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Lake(uri)
    if parsed.scheme == "file":
        return LocalLake(parsed.path)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a drive letter)
        return LocalLake(uri)
    raise ValueError(f"unsupported lake URI: {uri!r}")
