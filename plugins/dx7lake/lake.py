"""The lake: one key/value interface over a local folder or an S3 prefix.

Business code asks for bytes by key and never builds file paths or calls boto3, so the
same pipeline runs on the embedded folder and on S3. Keys are ``/``-separated relative
paths such as ``bronze/detailed_notes/p=a/<midi_id>.parquet``. Writes are atomic: a
reader sees either the whole object or nothing (temp file + rename locally; S3 PUTs are
atomic by nature).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from .config import DEFAULT_AWS_CONN_ID, Settings


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

    def copy(self, source: str, key: str) -> None:
        """Put the object at ``source`` under ``key`` too (S3 copies it server-side)."""
        self.put(key, self.get(source))

    def put_parquet(self, key: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.put(key, buf.getvalue())

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(io.BytesIO(self.get(key)), columns=columns)

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
        # walk only the folder the prefix names (its part up to the last "/"), not the
        # whole lake: gold alone holds one file per render
        folder = prefix.rpartition("/")[0]
        if folder:
            _check_key(folder)
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return iter(())
        keys = (
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        )
        return iter(sorted(k for k in keys if k.startswith(prefix)))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class LakeError(RuntimeError):
    """The lake's store cannot be used as configured (missing bucket, refused access)."""


class S3Lake(Lake):
    """An S3 prefix, reached through the Airflow amazon provider's S3Hook.

    The hook reads the ``aws_default`` connection (``Settings.aws_conn_id`` names another),
    whose extra may set ``endpoint_url`` for S3-compatible stores (MinIO, SeaweedFS, Garage,
    moto). Without such a connection the hook falls back to boto3's own chain: the usual AWS
    variables, ``AWS_ENDPOINT_URL``, or an EC2 instance profile. A PUT is atomic, so a reader
    sees a whole object or none; each carries its MD5 so the store rejects a body damaged
    on the way rather than keeping it.
    """

    def __init__(self, uri: str, aws_conn_id: str = DEFAULT_AWS_CONN_ID, client=None) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket[/prefix] URI: {uri!r}")
        self.uri = uri
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            _check_key(self.prefix)
        self.aws_conn_id = aws_conn_id
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = s3_client(self.aws_conn_id)
        return self._client

    def _k(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, operation: str, key: str, **kwargs):
        """One S3 call; a missing bucket or refused access names the lake and the key."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            if code == "NoSuchBucket":
                raise LakeError(f"lake {self.uri}: bucket {self.bucket!r} does not exist") from err
            if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise LakeError(f"lake {self.uri}: access to {key!r} refused ({code})") from err
            raise

    def get(self, key: str) -> bytes:
        return self._call("get_object", key, Key=self._k(key))["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._call("put_object", key, Key=self._k(key), Body=data, ContentMD5=md5)

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", key, Key=self._k(key))
        except KeyError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix``, as :class:`LocalLake` lists them."""
        if prefix:
            _check_key(prefix.removesuffix("/"))
        base = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
                keys.extend(obj["Key"][len(base) :] for obj in page.get("Contents", []))
        except self.client.exceptions.NoSuchBucket as err:
            raise LakeError(f"lake {self.uri}: bucket {self.bucket!r} does not exist") from err
        return iter(sorted(keys))

    def delete(self, key: str) -> None:
        self._call("delete_object", key, Key=self._k(key))

    def copy(self, source: str, key: str) -> None:
        """A server-side copy: the bytes do not travel through this process."""
        self._call("copy_object", key, Key=self._k(key), CopySource={"Bucket": self.bucket, "Key": self._k(source)})

    def ensure_bucket(self, attempts: int = 60, wait_s: float = 2.0) -> bool:
        """Create the bucket unless it exists; True when it was created.

        The docker-compose stack's init job calls this while its S3-compatible store may still
        be starting, so an unreachable endpoint is retried; on AWS the bucket comes from
        Terraform and this only checks that it is there.
        """
        from botocore.exceptions import EndpointConnectionError

        for _ in range(attempts - 1):
            try:
                return self._create_bucket_if_missing()
            except EndpointConnectionError:
                time.sleep(wait_s)
        return self._create_bucket_if_missing()

    def _create_bucket_if_missing(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = self.client.meta.region_name
        if region in (None, "us-east-1"):
            self.client.create_bucket(Bucket=self.bucket)
        else:
            self.client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": region})
        return True


def s3_client(aws_conn_id: str = DEFAULT_AWS_CONN_ID):
    """The boto3 S3 client of an Airflow connection (``Settings.aws_conn_id``)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id).get_conn()


def lake_of(settings: Settings) -> Lake:
    """The run's lake (``settings.lake_uri`` through ``settings.aws_conn_id`` when on S3)."""
    return open_lake(settings.lake_uri, settings.aws_conn_id)


def open_lake(uri: str, aws_conn_id: str = DEFAULT_AWS_CONN_ID) -> Lake:
    """Open a lake named by ``/dir``, ``file:///dir`` or ``s3://bucket/prefix``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Lake(uri, aws_conn_id=aws_conn_id)
    if parsed.scheme == "file":
        return LocalLake(parsed.path)
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # plain path (or a drive letter)
        return LocalLake(uri)
    raise ValueError(f"unsupported lake URI: {uri!r}")
