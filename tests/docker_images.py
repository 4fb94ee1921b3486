"""Base images for docker tests, built from Debian packages (no registry is reachable):
mmdebstrap with the machine's own apt sources, then `docker import`. The tarball is cached
under ~/.cache/rgrid-test-images, keyed by the package list."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

PYTHON_PACKAGES = ["python3", "ca-certificates"]
PYTHON_IMAGE = "rgrid-test/python:bookworm"


def ensure_python_image() -> str | None:
    """The test python image, built if needed; None (with no side effects) if impossible."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    if (
        subprocess.run([docker, "image", "inspect", PYTHON_IMAGE], capture_output=True).returncode
        == 0
    ):
        return PYTHON_IMAGE
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        return None
    key = hashlib.sha256(" ".join(PYTHON_PACKAGES).encode()).hexdigest()[:12]
    cache = Path.home() / ".cache" / "rgrid-test-images"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"python-bookworm-{key}.tar"
    if not tarball.exists():
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            [
                mmdebstrap,
                "--variant=minbase",
                f"--include={','.join(PYTHON_PACKAGES)}",
                "--format=tar",
                "bookworm",
                str(partial),
            ],
            check=True,
            capture_output=True,
        )
        partial.rename(tarball)
    subprocess.run([docker, "import", str(tarball), PYTHON_IMAGE], check=True, capture_output=True)
    return PYTHON_IMAGE
