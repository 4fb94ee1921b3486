"""Which values are secrets, and how they enter the cache key: by a keyed hash only."""

from __future__ import annotations

import pytest

from rgrid.cache.key import cache_parts, digest
from rgrid.client.secrets import seal_all, split_env
from rgrid.errors import UserInputError
from rgrid.infra.codec import CodecKey, Keyring
from rgrid.models.execution import ExecutionSpec, FileRef

RING = Keyring([CodecKey.generate()])
SCRIPT = FileRef(name="job.py", sha256="0" * 64, size=1)


def test_secret_looking_env_names_and_secret_flags_become_secrets() -> None:
    env, secrets = split_env(
        {"MODE": "fast", "API_TOKEN": "t", "DB_URL": "stays-plain"},
        ["SERVICE_URL", "DB_URL"],
        {"SERVICE_URL": "https://u:pw@svc", "DB_URL": "from-env"},
    )
    assert env == {"MODE": "fast"}
    assert secrets == {"API_TOKEN": "t", "SERVICE_URL": "https://u:pw@svc", "DB_URL": "from-env"}


def test_a_secret_flag_for_an_unset_variable_is_refused() -> None:
    with pytest.raises(UserInputError, match="--secret NOPE: NOPE is not set"):
        split_env({}, ["NOPE"], {})


def key_of(secrets: dict[str, str]) -> str:
    sealed, keyed = seal_all(RING, secrets)
    spec = ExecutionSpec(
        script=SCRIPT, secrets=sealed, secrets_digest=keyed, default_image="python:3.11-slim"
    )
    parts = cache_parts(spec)
    assert not [v for v in secrets.values() if v in repr(parts)]
    return digest(parts)


def test_the_cache_key_changes_with_a_secrets_value_but_not_with_its_sealing() -> None:
    # Sealing is randomized (a fresh nonce each time); the key must not be.
    assert key_of({"API_TOKEN": "tok-aaaa"}) == key_of({"API_TOKEN": "tok-aaaa"})
    assert key_of({"API_TOKEN": "tok-aaaa"}) != key_of({"API_TOKEN": "tok-bbbb"})
    assert key_of({"API_TOKEN": "tok-aaaa"}) != key_of({"OTHER_TOKEN": "tok-aaaa"})


def test_runs_without_secrets_keep_the_keys_they_had() -> None:
    assert "secrets" not in cache_parts(ExecutionSpec(script=SCRIPT)).as_json()
