"""`rgrid run --runtime docker` end to end (skipped where no dockerd or image can be had)."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from rgrid.infra.runtime.docker import docker_available
from tests.docker_images import ensure_python_image
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def image() -> str:
    if not asyncio.run(docker_available()):
        pytest.skip("no Docker daemon answers on this machine")
    built = ensure_python_image()
    if built is None:
        pytest.skip("cannot build a base image here (needs the docker CLI and mmdebstrap)")
    return built


def test_a_hostile_script_leaves_nothing_outside_its_outputs(cli: Cli, work: Path) -> None:
    (work / "hostile.py").write_text(
        textwrap.dedent("""
        import os
        os.symlink("/etc/passwd", "passwd-link")
        os.makedirs("sub", exist_ok=True)
        os.symlink("/", "sub/root-link")
        for target in ("/etc/evil", "../escaped.txt", "/work/../escaped2.txt"):
            try:
                open(target, "w").write("x")
                print("wrote", target)
            except OSError as exc:
                print("refused", target, exc.strerror)
        open("sub/real.txt", "w").write("fine")
    """)
    )
    result = cli("run", "hostile.py", "--runtime", "docker", "--no-network", "--json", cwd=work)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert payload["runtime"] == "docker"
    assert [Path(p).relative_to(work / "outputs").as_posix() for p in payload["outputs"]] == [
        "sub/real.txt"
    ]
    # Each escape the script tried was refused inside the container, as it reports itself,
    # and nothing of it reached the node's disk (its runs live under the stack's home).
    said = cli("logs", payload["id"], "--stdout-only").stdout.splitlines()
    targets = ["/etc/evil", "../escaped.txt", "/work/../escaped2.txt"]
    assert [line.split(" ", 2)[:2] for line in said] == [["refused", t] for t in targets]
    assert list(cli.home.rglob("escaped*")) == []


def test_a_pep723_script_gets_its_packages_in_a_container(cli: Cli, work: Path) -> None:
    (work / "deps.py").write_text(
        textwrap.dedent("""
        # /// script
        # dependencies = ["six==1.16.0"]
        # ///
        import os, six
        print("six", six.__version__, "uid", os.getuid())
    """)
    )
    result = cli("run", "deps.py", "--runtime", "docker", cwd=work, timeout=300)
    assert result.code == 0, result.stderr
    assert "six 1.16.0 uid 65534" in result.stdout
    assert "(docker)" in result.stderr
