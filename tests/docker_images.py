"""Base images for docker tests, built from Debian packages (no registry is reachable):
mmdebstrap with the machine's own apt sources, then `docker import`. The tarball is cached
under ~/.cache/rgrid-test-images, keyed by the package list."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

PYTHON_PACKAGES = ["python3", "ca-certificates"]
PYTHON_IMAGE = "rgrid-test/python:bookworm"
NODE_PACKAGES = ["nodejs", "npm", "ca-certificates"]
NODE_IMAGE = "rgrid-test/node:bookworm"


def ensure_python_image() -> str | None:
    """The test python image, built if needed; None (with no side effects) if impossible."""
    return ensure_image(PYTHON_IMAGE, PYTHON_PACKAGES)


def ensure_node_image() -> str | None:
    """The test Node.js image (with npm), built if needed; None if impossible."""
    return ensure_image(NODE_IMAGE, NODE_PACKAGES)


def ensure_image(tag: str, packages: list[str]) -> str | None:
    """`tag` imported from a Debian bookworm root with `packages`; None if impossible."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    if subprocess.run([docker, "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        return None
    key = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    cache = Path.home() / ".cache" / "rgrid-test-images"
    cache.mkdir(parents=True, exist_ok=True)
    name = tag.split("/")[-1].replace(":", "-")
    tarball = cache / f"{name}-{key}.tar"
    if not tarball.exists():
        # Two runs of the suite may build it at once: each writes its own partial file and
        # the rename (atomic) keeps one whole tarball.
        partial = tarball.with_suffix(f".partial-{os.getpid()}")
        subprocess.run(
            [
                mmdebstrap,
                "--variant=minbase",
                f"--include={','.join(packages)}",
                "--format=tar",
                "bookworm",
                str(partial),
            ],
            check=True,
            capture_output=True,
        )
        partial.rename(tarball)
    subprocess.run([docker, "import", str(tarball), tag], check=True, capture_output=True)
    return tag
