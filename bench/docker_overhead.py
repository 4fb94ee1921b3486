"""A warm trivial `rgrid run --runtime docker` against a bare `docker run` of the same image
and command, side by side in one script (goal: ratio <= 1.5).

    .venv/bin/python bench/docker_overhead.py [--runs 7]

Needs a Docker daemon; builds the Debian-based test image if missing (tests/docker_images.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands import RGRID, temporary_stack, timed

from tests.docker_images import ensure_python_image

# Marked not cacheable: every measured run must really run (see bench/cache_hit.py).
SCRIPT = "print('hi')\n# rgrid: no-cache\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    image = ensure_python_image()
    if image is None:
        raise SystemExit("needs the docker CLI, a daemon and mmdebstrap")
    with temporary_stack(27633, RGRID_PYTHON_IMAGE=image) as root:
        (root / "trivial.py").write_text(SCRIPT)
        rgrid = [*RGRID, "run", "trivial.py", "--runtime", "docker"]
        bare = ["docker", "run", "--rm", "-v", f"{root}:/work", "-w", "/work"]
        bare += [image, "python3", "trivial.py"]
        timed(rgrid, root)
        timed(bare, root)
        rgrid_s = statistics.median(timed(rgrid, root) for _ in range(runs))
        bare_s = statistics.median(timed(bare, root) for _ in range(runs))
    print(f"median of {runs} warm runs, image {image}")
    print(f"  docker run (bare):           {bare_s * 1000:6.0f} ms")
    print(f"  rgrid run --runtime docker:  {rgrid_s * 1000:6.0f} ms")
    print(f"  ratio rgrid/bare: {rgrid_s / bare_s:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
