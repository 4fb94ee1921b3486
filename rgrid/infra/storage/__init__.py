"""Object storage: a local directory or S3 (see base.Storage for the Protocol)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from rgrid.errors import ConfigError
from rgrid.infra.storage.base import Storage
from rgrid.infra.storage.local import LocalStorage


def open_storage(url: str) -> Storage:
    """The Storage for a URL: file:///dir or s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        # Imported here so local storage never loads aioboto3.
        from rgrid.infra.storage.s3 import S3Storage

        return S3Storage.from_url(url)
    raise ConfigError(
        f"unsupported storage URL {url!r}", "use file:///path/to/dir or s3://bucket/prefix"
    )
