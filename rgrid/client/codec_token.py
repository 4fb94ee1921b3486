"""The codec server's token and address: what the dev server's `--ui-codec-endpoint`
names. Apart from the server itself, so the stack's supervisor can name it before it has
imported any of the server's HTTP and protobuf stack."""

from __future__ import annotations

import os
import secrets as random
from pathlib import Path

from rgrid.config import Settings

TOKEN_FILE = "codec.token"


def token_of(home: Path) -> str:
    """The codec server's token, from a 0600 file under home made on first use."""
    path = home / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.{random.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(random.token_urlsafe(32))
        try:
            os.link(tmp, path)  # a concurrent first use keeps the one that won
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def codec_endpoint(settings: Settings, token: str) -> str:
    """What the dev server's `--ui-codec-endpoint` points at."""
    return f"http://{settings.dev_ip}:{settings.effective_codec_port}/{token}"
