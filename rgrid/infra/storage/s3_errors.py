"""botocore's exceptions as rgrid's errors, for S3Storage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from rgrid.errors import (
    ConfigError,
    NotFoundError,
    RgridError,
    ServiceUnavailableError,
    StorageError,
)

NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
_NO_SETTINGS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    ProfileNotFound,
    ConfigParseError,
)
_UNREACHABLE = (BotoConnectionError, HTTPClientError)
_CREDENTIALS_HINT = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"


@contextlib.contextmanager
def translated_errors(
    action: str, where: str, endpoint: Callable[[], str], no_bucket: Callable[[], ConfigError]
) -> Iterator[None]:
    """Re-raise a botocore exception (in the explicit cause chain) as an RgridError that
    says what could not be done to `where`."""
    try:
        yield
    except RgridError:
        raise
    except Exception as exc:
        vendor = _vendor_cause(exc)
        if vendor is None:
            raise
        raise _translate(vendor, action, where, endpoint, no_bucket) from exc


def _translate(
    exc: Exception,
    action: str,
    where: str,
    endpoint: Callable[[], str],
    no_bucket: Callable[[], ConfigError],
) -> RgridError:
    if isinstance(exc, _NO_SETTINGS):
        return ConfigError(f"no usable AWS credentials ({exc})", _CREDENTIALS_HINT)
    if isinstance(exc, _UNREACHABLE):
        return ServiceUnavailableError(
            f"object storage at {endpoint()} does not answer ({exc})",
            "check AWS_ENDPOINT_URL_S3 and the network, then retry",
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in NOT_FOUND:
            return NotFoundError(f"no stored object {where}", "it may have expired")
        if code == "NoSuchBucket":
            return no_bucket()
        if code in _REFUSED:
            return ConfigError(f"storage refused to {action} {where} ({code})", _CREDENTIALS_HINT)
    return StorageError(
        f"could not {action} {where}: {exc}", "retry; if it persists check the bucket"
    )


def error_code(exc: ClientError) -> str:
    """S3's error code (e.g. NoSuchKey) of a ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _vendor_cause(exc: BaseException) -> Exception | None:
    """The botocore exception in `exc`'s explicit cause chain (aioboto3 wraps some)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BotoCoreError | ClientError):
            return seen
        seen = seen.__cause__
    return None
