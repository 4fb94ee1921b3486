"""Object storage on S3 (or any S3 API) through aioboto3.

Credentials, region and endpoint come only from the standard AWS sources (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/*), resolved
by botocore. Keys live under the URL's prefix: `s3://bucket/team/x` stores `k` as `team/x/k`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlparse

import aioboto3
import structlog
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
)

from rgrid.errors import (
    ConfigError,
    ServiceUnavailableError,
    StorageError,
)
from rgrid.infra.storage.base import (
    KEEP_REFRESH,
    ObjectInfo,
    Progress,
    check_sha256,
    safe_relative,
)
from rgrid.infra.storage.s3_errors import NOT_FOUND, error_code, translated_errors

log = structlog.get_logger()

MIB = 1024 * 1024

# Standard retry mode retries every request, each multipart part included, on throttling,
# 5xx and connection errors, with backoff. Three attempts keep a dead endpoint's error within
# seconds; callers (activities) retry whole calls on top.
DEFAULT_CLIENT_CONFIG = Config(connect_timeout=5, retries={"mode": "standard", "max_attempts": 3})

# Memory is bounded by parts, not the file: an upload holds the parts in flight (aiohttp
# copies each while sending), max_io_queue queued and one being read, ~64 MiB measured;
# a download holds max_concurrency parts. S3 allows 10,000 parts: 8 MiB caps objects at ~78 GiB.
DEFAULT_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=8 * MIB,
    multipart_chunksize=8 * MIB,
    max_concurrency=4,
    max_io_queue=2,
)

_COPY_CONFIG = TransferConfig(multipart_threshold=5 * 1024 * MIB, multipart_chunksize=512 * MIB)

# Whole-download attempts: botocore retries requests, not a body cut off mid-stream or a
# copy whose sha256 does not match.
DOWNLOAD_ATTEMPTS = 3


class S3Storage:
    """Storage in an S3 bucket under a prefix; one session, one client reused across calls.

    The client opens on first use; close it with `aclose()` or use `async with`.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client_config: Config | None = None,
        transfer_config: TransferConfig | None = None,
        page_size: int = 1000,
        keep_refresh: timedelta = KEEP_REFRESH,
    ) -> None:
        if not bucket:
            raise ConfigError("S3 storage URL names no bucket", "use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = f"{safe_relative(prefix.strip('/')).as_posix()}/" if prefix.strip("/") else ""
        self._client_config = client_config or DEFAULT_CLIENT_CONFIG
        self._transfer = transfer_config or DEFAULT_TRANSFER_CONFIG
        self._page_size = page_size
        self._keep_refresh = keep_refresh
        self._session = aioboto3.Session()
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._bucket_seen = False

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """The storage for `s3://bucket/prefix`."""
        parsed = urlparse(url)
        return cls(parsed.netloc, unquote(parsed.path))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client; a later call opens a new one."""
        async with self._lock:
            stack, self._stack, self._client = self._stack, contextlib.AsyncExitStack(), None
            self._bucket_seen = False
            await stack.aclose()

    async def exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def keep(self, key: str) -> bool:
        head = await self._head(key)
        if head is None:
            return False
        if datetime.now(UTC) - head["LastModified"] > self._keep_refresh:
            await self._refresh(key)
        return True

    async def _head(self, key: str) -> dict[str, Any] | None:
        full = self._key(key)
        with self._errors("look up", key):
            client = await self._open()
            try:
                head: dict[str, Any] = await client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if error_code(exc) not in NOT_FOUND:
                    raise
                # A HEAD answers a bare 404 for a missing bucket too: ask once which it is.
                if not self._bucket_seen:
                    await self._check_bucket(client)
                return None
        self._bucket_seen = True
        return head

    async def _refresh(self, key: str) -> None:
        # Copying an object onto itself, inside S3, restarts the lifecycle clock: no
        # byte goes through this machine. A single copy works up to 5 GiB.
        full = self._key(key)
        with self._errors("refresh", key):
            client = await self._open()
            await client.copy(
                {"Bucket": self.bucket, "Key": full},
                self.bucket,
                full,
                ExtraArgs={"MetadataDirective": "REPLACE"},
                Config=_COPY_CONFIG,
            )
        log.debug("s3_refreshed", key=key)

    async def put_file(self, key: str, path: Path, progress: Progress | None = None) -> None:
        full = self._key(key)
        with self._errors("upload", key):
            client = await self._open()
            await client.upload_file(
                str(path), self.bucket, full, Config=self._transfer, Callback=progress
            )

    async def put_bytes(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with self._errors("upload", key):
            client = await self._open()
            await client.put_object(Bucket=self.bucket, Key=full, Body=data)

    async def get_file(
        self,
        key: str,
        dest: Path,
        progress: Progress | None = None,
        sha256: str | None = None,
    ) -> None:
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                await self._get_file_once(key, dest, progress, sha256)
                return
            except (StorageError, ServiceUnavailableError) as exc:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise
                log.warning("s3_download_retry", key=key, attempt=attempt, error=exc.message)
                await asyncio.sleep(0.5 * attempt)

    async def _get_file_once(
        self, key: str, dest: Path, progress: Progress | None, sha256: str | None
    ) -> None:
        full = self._key(key)
        tmp = await asyncio.to_thread(_temp_beside, dest)
        try:
            with self._errors("download", key):
                client = await self._open()
                await client.download_file(
                    self.bucket,
                    full,
                    str(tmp),
                    Config=self._transfer,
                    Callback=_increments(progress) if progress else None,
                )
            await asyncio.to_thread(check_sha256, tmp, sha256, key)
            await asyncio.to_thread(os.replace, tmp, dest)
        finally:
            # Synchronous so it also runs when the download is cancelled.
            tmp.unlink(missing_ok=True)

    async def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        with self._errors("download", key):
            client = await self._open()
            response = await client.get_object(Bucket=self.bucket, Key=full)
            async with response["Body"] as body:
                data: bytes = await body.read()
        return data

    async def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        # Directory semantics, as LocalStorage: "logs/a" lists logs/a/*, not logs/ab/*.
        under = self._key(prefix.rstrip("/")) + "/" if prefix.strip("/") else self.prefix
        found = []
        with self._errors("list", prefix):
            client = await self._open()
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=under,
                PaginationConfig={"PageSize": self._page_size},
            )
            async for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(self.prefix)
                    found.append(ObjectInfo(key=key, size=item["Size"]))
        return sorted(found, key=lambda o: o.key)

    async def _check_bucket(self, client: Any) -> None:
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) in {*NOT_FOUND, "NoSuchBucket"}:
                raise self._no_bucket() from exc
            raise
        self._bucket_seen = True

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn botocore's exceptions into rgrid's."""
        with translated_errors(
            action, f"s3://{self.bucket}/{self.prefix}{key}", self._endpoint, self._no_bucket
        ):
            yield

    def _endpoint(self) -> str:
        return self._client.meta.endpoint_url if self._client else "the S3 endpoint"

    def _no_bucket(self) -> ConfigError:
        return ConfigError(
            f"no bucket {self.bucket!r}", "run `rgrid admin setup` or fix the storage URL"
        )

    async def ensure_bucket(self) -> bool:
        """Create the bucket if it is missing; True when it was created."""
        with self._errors("create the bucket for", ""):
            client = await self._open()
            try:
                await client.head_bucket(Bucket=self.bucket)
                return False
            except ClientError as exc:
                if error_code(exc) not in {*NOT_FOUND, "NoSuchBucket"}:
                    raise
            region = client.meta.region_name
            extra = {}
            if region and region != "us-east-1":  # us-east-1 refuses an explicit location
                extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                await client.create_bucket(Bucket=self.bucket, **extra)
            except ClientError as exc:
                if error_code(exc) in {"BucketAlreadyOwnedByYou"}:
                    return False  # another setup won the race
                raise
        self._bucket_seen = True
        return True

    async def put_lifecycle(self, rules: builtins.list[dict[str, Any]]) -> None:
        """Replace the bucket's lifecycle rules with `rules` (S3's own format)."""
        with self._errors("set the lifecycle rules of", ""):
            client = await self._open()
            await client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules}
            )

    async def get_lifecycle(self) -> builtins.list[dict[str, Any]]:
        """The bucket's lifecycle rules ([] when it has none)."""
        with self._errors("read the lifecycle rules of", ""):
            client = await self._open()
            try:
                found = await client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
            except ClientError as exc:
                if error_code(exc) == "NoSuchLifecycleConfiguration":
                    return []
                raise
        rules: builtins.list[dict[str, Any]] = found.get("Rules", [])
        return rules

    def _key(self, key: str) -> str:
        return self.prefix + safe_relative(key).as_posix()

    async def _open(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._stack.enter_async_context(
                        self._session.client("s3", config=self._client_config)
                    )
        return self._client


def _increments(progress: Progress) -> Progress:
    """Adapt aioboto3's download callback, which reports running totals, to increments
    (what its upload callback and boto3 report)."""
    total = 0

    def report(so_far: int) -> None:
        nonlocal total
        step, total = so_far - total, so_far
        progress(step)

    return report


def _temp_beside(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    os.close(fd)
    return Path(tmp)
