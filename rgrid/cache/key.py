"""The result cache key: what a run's outputs depend on, hashed.

Two runs with the same key would compute the same outputs, so the second may be served
the first one's. Any change to a part gives a new key; that is the only invalidation a
changed script, input or dependency needs. The key is a pure function of the spec: the
client resolves every setting it depends on (the image) into the spec, so the CLI and the
workflow's plan, however each is configured, compute the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, Field

from rgrid.models.execution import ExecutionSpec

# Bump when the parts or their meaning change: every older entry then misses.
CACHE_SCHEMA = 1

# Environment variables whose values are secrets: they travel sealed (rgrid.client.secrets)
# and the key has only a keyed hash of them, so neither the key nor `--dry-run` shows one.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|AUTH|(^|_)KEY$|API_?KEY|ACCESS_KEY", re.IGNORECASE
)
# `# rgrid: no-cache` (or `// rgrid: no-cache` in a Node script) on a line of its own.
_NO_CACHE_MARKER = re.compile(r"^\s*(#|//)\s*rgrid:\s*no-cache\s*$", re.MULTILINE)


def is_secret(name: str) -> bool:
    """True for environment variable names that look like they hold a secret."""
    return bool(_SECRET_NAME.search(name))


def has_no_cache_marker(script_text: str) -> bool:
    """True when the script opts out of caching (it has side effects)."""
    return bool(_NO_CACHE_MARKER.search(script_text))


class CacheParts(BaseModel):
    """Everything a run's outputs depend on, one field per part, as plain JSON values.
    A new part is one more field here and one more line in `cache_parts`; a part that
    depends on a setting or a secret is resolved into the spec by the client first (as
    `default_image` is), so the key stays a function of the spec alone."""

    schema_version: int = Field(serialization_alias="schema")
    script: tuple[str, str]  # staged name, sha256
    files: list[tuple[str, str]]  # inputs and the script's sibling modules, by staged name
    runtime: str
    image: str | None  # --image or the resolved default; None on the process runtime
    requirements: list[str]
    args: list[str]
    env: dict[str, str]  # non-secret variables only
    network: bool
    # Secret names and the client's keyed hash of their values: a changed secret misses.
    # Absent (not null) without secrets, so those runs keep the keys they had.
    secrets: tuple[list[str], str | None] | None = None

    def as_json(self) -> dict[str, Any]:
        """The parts as hashed and as `--dry-run` shows them."""
        return self.model_dump(
            mode="json", by_alias=True, exclude={"secrets"} if self.secrets is None else None
        )


def cache_parts(spec: ExecutionSpec) -> CacheParts:
    """The parts of a spec's key."""
    return CacheParts(
        schema_version=CACHE_SCHEMA,
        script=(spec.script.name, spec.script.sha256),
        files=sorted((ref.name, ref.sha256) for ref in spec.inputs),
        runtime=spec.runtime,
        image=None if spec.runtime == "process" else (spec.image or spec.default_image),
        requirements=sorted(spec.requirements),
        args=spec.args,
        env={name: value for name, value in sorted(spec.env.items()) if not is_secret(name)},
        network=spec.network,
        secrets=(sorted(spec.secrets), spec.secrets_digest) if spec.secrets else None,
    )


def digest(parts: CacheParts) -> str:
    """sha256 over the canonical JSON of the parts."""
    canonical = json.dumps(
        parts.as_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_key(spec: ExecutionSpec) -> str | None:
    """The run's key, as the CLI and the workflow's plan both compute it; None when the
    script opts out of caching."""
    if not spec.cacheable:
        return None
    return digest(cache_parts(spec))
