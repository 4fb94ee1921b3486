"""Which image a script runs on, and what counts as an image reference: pure, so the
client can check and resolve images without importing a runtime."""

from __future__ import annotations

import re

from rgrid.errors import UserInputError

NODE_SUFFIXES = (".js", ".mjs", ".cjs")  # scripts run with node; everything else with python
# Docker's own reference grammar, simplified: refuse anything else before the API sees it.
IMAGE_REFERENCE = re.compile(
    r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]{1,128})?(@sha256:[a-f0-9]{64})?"
)


def check_image(reference: str) -> str:
    """A valid image reference, or UserInputError."""
    if not IMAGE_REFERENCE.fullmatch(reference):
        raise UserInputError(f"bad image name {reference!r}", "use e.g. python:3.11-slim")
    return reference


def runs_with_node(script: str) -> bool:
    """True for scripts the node runtime runs; everything else runs with python."""
    return script.endswith(NODE_SUFFIXES)


def default_image(script: str, python_image: str, node_image: str) -> str:
    """The image a run without --image gets, by the script's language."""
    return node_image if runs_with_node(script) else python_image
