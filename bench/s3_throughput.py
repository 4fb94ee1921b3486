"""S3 throughput: a large file up and down through S3Storage vs plain aioboto3, side by side
against the same local S3 server (moto's server mode), in one run.

    .venv/bin/python bench/s3_throughput.py [--size-mib 1024] [--rounds 2]

The baseline is aioboto3's own `upload_file` / `download_file` with boto3's default
transfer config. rgrid's download includes what a real one does: the atomic rename and the
sha256 check. Rounds alternate baseline and rgrid so drift hits both; the best round of
each is reported. Then the file is staged as `rgrid run` stages inputs
(`upload_files`: hash, HEAD, PUT only if missing) to show the bytes a second identical
run sends (goal: 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aioboto3

from rgrid.client.submit import upload_files
from rgrid.infra.storage.base import cas_key, sha256_file
from rgrid.infra.storage.s3 import S3Storage
from tests.conftest import aws_test_env
from tests.s3server import moto_server, running_moto

MIB = 1024 * 1024


async def timed(step: Callable[[], Awaitable[object]]) -> float:
    began = time.perf_counter()
    await step()
    return time.perf_counter() - began


async def measure(source: Path, root: Path, rounds: int) -> None:
    size = source.stat().st_size
    digest = sha256_file(source)
    bucket = "bench"
    session = aioboto3.Session()
    times: dict[str, list[float]] = {
        "plain up": [],
        "rgrid up": [],
        "plain down": [],
        "rgrid down": [],
    }
    async with session.client("s3") as client, S3Storage(bucket, "rgrid") as storage:
        await client.create_bucket(Bucket=bucket)
        for _ in range(rounds):
            times["plain up"].append(
                await timed(lambda: client.upload_file(str(source), bucket, "plain/big.bin"))
            )
            times["rgrid up"].append(await timed(lambda: storage.put_file(cas_key(digest), source)))
            times["plain down"].append(
                await timed(
                    lambda: client.download_file(bucket, "plain/big.bin", str(root / "plain.bin"))
                )
            )
            times["rgrid down"].append(
                await timed(
                    lambda: storage.get_file(cas_key(digest), root / "rgrid.bin", sha256=digest)
                )
            )
            (root / "plain.bin").unlink()
            (root / "rgrid.bin").unlink()
        # The same input again, staged the way `rgrid run` stages it.
        _, again = await upload_files(storage, {"big.bin": source})
        _, third = await upload_files(storage, {"big.bin": source})

    best = {name: min(values) for name, values in times.items()}
    rate = {name: size / MIB / seconds for name, seconds in best.items()}
    print(f"file: {size / MIB:.0f} MiB, rounds: {rounds} (best of each)")
    for direction in ("up", "down"):
        plain, rgrid = rate[f"plain {direction}"], rate[f"rgrid {direction}"]
        print(
            f"{direction:>4}: rgrid {rgrid:7.1f} MiB/s   plain aioboto3 {plain:7.1f} MiB/s   "
            f"ratio {rgrid / plain:.2f}"
        )
    print(
        f"bytes sent by a second identical run: {again.uploaded_bytes} "
        f"(a third: {third.uploaded_bytes}; goal 0)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    binary = moto_server()
    if binary is None:
        raise SystemExit("moto_server is not installed: bash scripts/bootstrap.sh test")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "big.bin"
        with source.open("wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(MIB))
        with running_moto(binary, root / "moto.log") as endpoint:
            os.environ.update(aws_test_env(endpoint, root))
            asyncio.run(measure(source, root, args.rounds))


if __name__ == "__main__":
    main()
