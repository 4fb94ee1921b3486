"""The result cache key: what a run's outputs depend on, hashed.

Two runs with the same key would compute the same outputs, so the second may be served
the first one's. Any change to a part gives a new key; that is the only invalidation a
changed script, input or dependency needs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from rgrid.infra.runtime.base import NODE_SUFFIXES
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


def default_image(spec: ExecutionSpec, python_image: str, node_image: str) -> str:
    """The image a run without --image gets, by the script's language."""
    return node_image if spec.script.name.endswith(NODE_SUFFIXES) else python_image


def cache_parts(spec: ExecutionSpec, image: str | None) -> dict[str, Any]:
    """Everything the outputs depend on, as plain JSON values. `image` is the image the
    run would use (its --image or the language default); the process runtime uses none."""
    parts = {
        "schema": CACHE_SCHEMA,
        "script": [spec.script.name, spec.script.sha256],
        # Inputs and the sibling modules shipped with the script, by staged name.
        "files": sorted([ref.name, ref.sha256] for ref in spec.inputs),
        "runtime": spec.runtime,
        "image": None if spec.runtime == "process" else (spec.image or image),
        "requirements": sorted(spec.requirements),
        "args": spec.args,
        "env": {name: value for name, value in sorted(spec.env.items()) if not is_secret(name)},
        "network": spec.network,
    }
    if spec.secrets:  # a keyed hash of their values: a changed secret misses
        parts["secrets"] = [sorted(spec.secrets), spec.secrets_digest]
    return parts


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the parts."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def spec_key(spec: ExecutionSpec, python_image: str, node_image: str) -> str | None:
    """The run's key, as the CLI and the workflow's plan both compute it; None when the
    script opts out of caching."""
    if not spec.cacheable:
        return None
    return cache_key(cache_parts(spec, default_image(spec, python_image, node_image)))
