"""S3Storage: real aioboto3 against a real local S3 API server (moto_server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp
import pytest
from aiohttp import web
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from rgrid.errors import (
    ConfigError,
    NotFoundError,
    ServiceUnavailableError,
    StorageError,
    UnsafePathError,
)
from rgrid.infra.storage import open_storage
from rgrid.infra.storage.base import sha256_file
from rgrid.infra.storage.s3 import S3Storage
from tests.conftest import free_port

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture
async def s3(aws_env: None) -> AsyncIterator[Any]:
    """A raw client, to look at the bucket behind the adapter's back."""
    async with aioboto3.Session().client("s3") as client:
        yield client


@pytest.fixture
async def bucket(s3: Any) -> str:
    name = f"rgrid-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
async def storage(bucket: str) -> AsyncIterator[S3Storage]:
    async with S3Storage.from_url(f"s3://{bucket}/team/x") as store:
        yield store


def write_random(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        for _ in range(size // MIB):
            fh.write(os.urandom(MIB))
        fh.write(os.urandom(size % MIB))
    return path


async def test_bytes_round_trip(storage: S3Storage) -> None:
    await storage.put_bytes("logs/e1/000001", b"hello\n")
    assert await storage.get_bytes("logs/e1/000001") == b"hello\n"


async def test_file_round_trip_replaces_dest_and_reports_progress(
    storage: S3Storage, tmp_path: Path
) -> None:
    source = write_random(tmp_path / "in.bin", 300_000)
    dest = tmp_path / "out" / "copy.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    sent: list[int] = []
    received: list[int] = []

    await storage.put_file("cas/ab/in", source, progress=sent.append)
    await storage.get_file("cas/ab/in", dest, progress=received.append)

    assert dest.read_bytes() == source.read_bytes()
    assert sum(sent) == sum(received) == 300_000
    assert os.listdir(dest.parent) == ["copy.bin"]


async def test_keys_are_stored_under_the_url_prefix(
    storage: S3Storage, s3: Any, bucket: str
) -> None:
    await storage.put_bytes("outputs/e1/a.txt", b"a")
    await storage.put_bytes("outputs/e1/sub/b.txt", b"bb")

    raw = await s3.list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in raw["Contents"]) == [
        "team/x/outputs/e1/a.txt",
        "team/x/outputs/e1/sub/b.txt",
    ]
    assert [(o.key, o.size) for o in await storage.list("outputs/e1/")] == [
        ("outputs/e1/a.txt", 1),
        ("outputs/e1/sub/b.txt", 2),
    ]


async def test_list_pages_sorts_and_treats_the_prefix_as_a_directory(bucket: str) -> None:
    async with S3Storage(bucket, "p", page_size=40) as storage:
        names = [f"logs/e1/{n:06d}" for n in range(150)]
        await asyncio.gather(*(storage.put_bytes(name, b"x") for name in reversed(names)))
        await storage.put_bytes("logs/e10/000000", b"not under logs/e1")

        listed = await storage.list("logs/e1")

        assert [o.key for o in listed] == names
        assert len(await storage.list("")) == 151
        assert await storage.list("logs/none/") == []


async def test_exists_is_true_only_for_stored_keys(storage: S3Storage) -> None:
    await storage.put_bytes("cas/aa/aa11", b"data")
    assert await storage.exists("cas/aa/aa11")
    assert not await storage.exists("cas/aa/aa12")


async def test_missing_key_raises_not_found_and_leaves_no_temp_file(
    storage: S3Storage, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError):
        await storage.get_bytes("nope")
    with pytest.raises(NotFoundError):
        await storage.get_file("nope", tmp_path / "dest.bin")
    assert os.listdir(tmp_path) == []


async def test_large_file_goes_multipart_and_round_trips(
    storage: S3Storage, s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = write_random(tmp_path / "big.bin", 40 * MIB)
    sent: list[int] = []
    received: list[int] = []

    await storage.put_file("cas/bi/big", source, progress=sent.append)
    head = await s3.head_object(Bucket=bucket, Key="team/x/cas/bi/big")
    await storage.get_file("cas/bi/big", tmp_path / "back.bin", progress=received.append)

    assert head["ETag"].strip('"').endswith("-5")  # 8 MiB parts
    assert sha256_file(tmp_path / "back.bin") == sha256_file(source)
    assert sum(sent) == sum(received) == 40 * MIB


async def test_large_transfers_hold_a_few_parts_not_the_file(bucket: str, tmp_path: Path) -> None:
    source = write_random(tmp_path / "big.bin", 48 * MIB)
    small = TransferConfig(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1, max_io_queue=1
    )
    async with S3Storage(bucket, transfer_config=small) as storage:
        await storage.exists("warm-up")  # client creation is not the transfer's memory
        tracemalloc.start()
        try:
            await storage.put_file("big", source)
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            await storage.get_file("big", tmp_path / "back.bin")
            download_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # ~28 MiB measured for uploads: the part being read, one queued, and the one being sent
    # with aiohttp's copy of it. Reading the whole file would take at least 48 MiB.
    assert upload_peak < 40 * MIB
    assert download_peak < 40 * MIB
    assert sha256_file(tmp_path / "back.bin") == sha256_file(source)


async def test_missing_credentials_raise_config_error_naming_the_variables(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with S3Storage(bucket) as storage:
        with pytest.raises(ConfigError) as caught:
            await storage.put_bytes("k", b"v")

    line = caught.value.one_line()
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    assert "\n" not in line


async def test_dead_endpoint_raises_service_unavailable_fast(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    fail_fast = Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1})
    started = time.monotonic()
    async with S3Storage("any-bucket", client_config=fail_fast) as storage:
        with pytest.raises(ServiceUnavailableError):
            await storage.exists("k")
    assert time.monotonic() - started < 5


async def test_missing_bucket_raises_config_error(aws_env: None) -> None:
    async with S3Storage(f"absent-{uuid.uuid4().hex[:12]}") as storage:
        with pytest.raises(ConfigError, match="no bucket"):
            await storage.put_bytes("k", b"v")
        # A HEAD cannot tell a missing key from a missing bucket; exists() asks which.
        with pytest.raises(ConfigError, match="no bucket"):
            await storage.exists("cas/aa/aa11")


async def test_a_download_whose_sha256_differs_is_refused_and_dest_kept(
    storage: S3Storage, tmp_path: Path
) -> None:
    source = write_random(tmp_path / "in.bin", 100_000)
    await storage.put_file("cas/in", source)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"previous")

    with pytest.raises(StorageError, match="corrupted"):
        await storage.get_file("cas/in", dest, sha256="0" * 64)
    assert dest.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["dest.bin", "in.bin"]

    await storage.get_file("cas/in", dest, sha256=sha256_file(source))
    assert dest.read_bytes() == source.read_bytes()


async def test_client_reopens_after_aclose(storage: S3Storage) -> None:
    await storage.put_bytes("k", b"v")
    await storage.aclose()
    assert await storage.get_bytes("k") == b"v"


async def test_open_storage_maps_s3_urls_and_rejects_unsafe_keys(aws_env: None) -> None:
    storage = open_storage("s3://my-bucket/team/x/")
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("my-bucket", "team/x/")
    with pytest.raises(UnsafePathError):
        await storage.put_bytes("../escape", b"")
    with pytest.raises(ConfigError):
        open_storage("s3:///no-bucket")


def test_local_storage_does_not_import_aioboto3(tmp_path: Path) -> None:
    code = (
        "import sys; from rgrid.infra.storage import open_storage; "
        f"open_storage({tmp_path.as_uri()!r}); assert 'aioboto3' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@contextlib.asynccontextmanager
async def flaky_proxy(upstream: str, fail_every: int) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP proxy to the S3 server that answers every `fail_every`-th request with
    503 SlowDown (as S3 does under load) instead of forwarding it; yields its URL and the
    requests it failed."""
    failed: list[str] = []
    seen = 0

    async def forward(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        seen += 1
        if seen % fail_every == 0:
            failed.append(f"{request.method} {request.path_qs}")
            body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            return web.Response(status=503, body=body, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=await request.read()
        ) as answer:
            # A HEAD's Content-Length is the object's size: pass it on as it is.
            dropped = {"transfer-encoding", "content-encoding"}
            if request.method != "HEAD":
                dropped.add("content-length")
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in dropped}
            return web.Response(status=answer.status, body=await answer.read(), headers=headers)

    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", failed
        finally:
            await runner.cleanup()


async def test_transient_errors_on_parts_are_retried_and_the_file_arrives_whole(
    bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = write_random(tmp_path / "big.bin", 40 * MIB)
    async with flaky_proxy(s3_endpoint, fail_every=3) as (proxy, failed):
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy)
        async with S3Storage(bucket) as storage:
            assert not await storage.exists("cas/big")
            await storage.put_file("cas/big", source)
            await storage.get_file("cas/big", tmp_path / "back.bin", sha256=sha256_file(source))

    assert any("partNumber" in request for request in failed), failed
    assert any(request.startswith("GET") for request in failed), failed
    assert sha256_file(tmp_path / "back.bin") == sha256_file(source)


async def test_keep_restarts_an_inputs_expiry_clock_without_sending_it_again(
    bucket: str, s3: Any
) -> None:
    async with S3Storage(bucket, keep_refresh=timedelta(0)) as storage:
        await storage.put_bytes("cas/ke/kept", b"input bytes")
        written = (await s3.head_object(Bucket=bucket, Key="cas/ke/kept"))["LastModified"]
        await asyncio.sleep(1.1)  # LastModified has whole seconds

        assert await storage.keep("cas/ke/kept")
        assert not await storage.keep("cas/ke/absent")

        used = (await s3.head_object(Bucket=bucket, Key="cas/ke/kept"))["LastModified"]
        assert used > written
        assert await storage.get_bytes("cas/ke/kept") == b"input bytes"
    async with S3Storage(bucket) as storage:  # used within the day: no copy
        assert await storage.keep("cas/ke/kept")
        again = (await s3.head_object(Bucket=bucket, Key="cas/ke/kept"))["LastModified"]
        assert again == used
