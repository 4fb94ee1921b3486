"""Start an rgrid run from a plain temporalio client, using only the contract in
docs/api.md: no rgrid import. The script goes into storage at cas/<sha[:2]>/<sha>; the
input is ExecutionSpec JSON; the result comes back encrypted with rgrid's payload codec
(AES-256-GCM, the key named in the payload's metadata), which this file implements.

    python examples/raw_contract.py --address 127.0.0.1:7233 \\
        --storage ~/.local/share/rgrid/storage --keys ~/.local/share/rgrid/codec.keys \\
        --project geo examples/hello.py

It prints the ExecutionStatus JSON the workflow returned.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec


class RgridCodec(PayloadCodec):
    """Decrypts what rgrid encrypted; what this client sends goes as plain JSON (rgrid's
    workers accept payloads without the encryption encoding)."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != b"binary/encrypted":
                out.append(p)
                continue
            key = self.keys[p.metadata["encryption-key-id"].decode()]
            plain = AESGCM(key).decrypt(p.data[:12], p.data[12:], None)
            out.append(Payload.FromString(plain))
        return out


def read_keys(text: str) -> dict[str, bytes]:
    """`id:base64` entries, comma- or line-separated (RGRID_CODEC_KEY or the key file)."""
    keys = {}
    for item in text.replace(",", "\n").split():
        key_id, _, encoded = item.rpartition(":")
        keys[key_id] = base64.b64decode(encoded)
    return keys


def store(storage: Path, path: Path) -> dict[str, object]:
    """Place a file where rgrid's nodes look for it; its FileRef JSON."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    dest = storage / "cas" / sha[:2] / sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest)
    return {"name": path.name, "sha256": sha, "size": path.stat().st_size}


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--storage", type=Path, required=True, help="a local storage dir")
    parser.add_argument("--keys", type=Path, help="the codec key file (or RGRID_CODEC_KEY)")
    parser.add_argument("--project", default="default")
    parser.add_argument("--node-class", default="local")
    parser.add_argument("script", type=Path)
    parser.add_argument("args", nargs="*")
    opts = parser.parse_args()

    keys = read_keys(os.environ.get("RGRID_CODEC_KEY") or opts.keys.read_text())
    converter = dataclasses.replace(DataConverter.default, payload_codec=RgridCodec(keys))
    client = await Client.connect(opts.address, namespace=opts.namespace, data_converter=converter)
    spec = {
        "script": store(opts.storage, opts.script),
        "args": opts.args,
        "project": opts.project,
        "node_class": opts.node_class,
        "tags": {"via": "raw-contract"},
    }
    handle = await client.start_workflow(
        "ExecutionWorkflow",
        spec,
        id=f"exec-raw-{uuid.uuid4().hex}",
        task_queue="rgrid",
        static_summary=f"{opts.script.name} (raw contract)",
    )
    result = await handle.result()
    print(json.dumps(result))
    return 0 if result["phase"] == "succeeded" else 1


if __name__ == "__main__":
    code = asyncio.run(main())
    # Skip interpreter finalization: temporalio's Rust runtime threads can crash a
    # short-lived client process there (temporalio/sdk-python#300).
    sys.stdout.flush()
    os._exit(code)
