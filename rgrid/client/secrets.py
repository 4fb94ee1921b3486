"""Secrets of a run: `--secret NAME` (the value from the caller's environment) and `-e`
names that look secret. They travel sealed (rgrid.infra.codec): only a node opens them,
into the script's environment; the cache key gets a keyed hash of their values."""

from __future__ import annotations

from collections.abc import Mapping

from rgrid.cache.key import is_secret
from rgrid.errors import UserInputError
from rgrid.infra.codec import Keyring

_NAME_HINT = "export it first, e.g. `export API_TOKEN=...; rgrid run job.py --secret API_TOKEN`"


def split_env(
    env: Mapping[str, str], secret_names: list[str], environ: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """(plain env, secrets): every --secret from `environ`, and -e pairs named like one."""
    plain = {name: value for name, value in env.items() if not is_secret(name)}
    secrets = {name: value for name, value in env.items() if is_secret(name)}
    for name in secret_names:
        if name not in environ:
            raise UserInputError(
                f"--secret {name}: {name} is not set in this environment", _NAME_HINT
            )
        plain.pop(name, None)
        secrets[name] = environ[name]
    return plain, secrets


def seal_all(keyring: Keyring, secrets: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The sealed values by name, and their keyed digest (None without secrets)."""
    if not secrets:
        return {}, None
    sealed = {name: keyring.seal(name, value) for name, value in sorted(secrets.items())}
    return sealed, keyring.secrets_digest(dict(secrets))
