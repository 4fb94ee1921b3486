"""Paths a user takes without pinning anything: the default runtime, leaving outputs in
storage, and re-running a success on purpose."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rgrid.infra.runtime.docker import docker_available
from tests.docker_images import ensure_python_image
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e


def test_the_default_runtime_is_docker_where_a_daemon_and_image_answer_else_the_sandbox(
    cli: Cli, work: Path
) -> None:
    has_docker = asyncio.run(docker_available()) and ensure_python_image() is not None
    # As a user who never set RGRID_RUNTIME (the other e2e tests pin the process runtime).
    unpinned = Cli(env={k: v for k, v in cli.env.items() if k != "RGRID_RUNTIME"}, home=cli.home)
    (work / "where.py").write_text("print('ran')\n# rgrid: no-cache\n")
    result = unpinned("run", "where.py", "--json", cwd=work, timeout=300)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert isinstance(payload, dict)
    assert payload["runtime"] == ("docker" if has_docker else "process")
    assert unpinned("logs", payload["id"], "--stdout-only").stdout == "ran\n"


def test_remote_only_leaves_outputs_in_storage_until_downloaded(cli: Cli, work: Path) -> None:
    (work / "make.py").write_text("open('made.txt', 'w').write('kept')\n# rgrid: no-cache\n")
    result = cli("run", "make.py", "--remote-only", cwd=work)
    assert result.code == 0, result.stderr
    execution_id = result.stderr.splitlines()[0].strip()
    assert not (work / "outputs").exists()  # nothing came down
    assert f"1 output(s) kept in storage: `rgrid download {execution_id}`" in result.stderr
    fetched = cli("download", execution_id, cwd=work)
    assert fetched.code == 0, fetched.stderr
    assert (work / "outputs" / "made.txt").read_text() == "kept"


def test_retry_force_computes_a_success_again_instead_of_serving_the_cache(
    cli: Cli, work: Path
) -> None:
    (work / "token.py").write_text("import os\nopen('token.txt', 'w').write(os.urandom(8).hex())\n")
    first = cli("run", "token.py", "--json", cwd=work).json()
    assert isinstance(first, dict) and first["status"] == "succeeded"
    token = (work / "outputs" / "token.txt").read_text()

    refused = cli("retry", first["id"], cwd=work)
    assert refused.code == 125 and "use --force" in refused.stderr

    again = cli("retry", "--force", first["id"], "--json", cwd=work)
    assert again.code == 0, again.stderr
    rerun = again.json()
    assert isinstance(rerun, dict)
    assert rerun["status"] == "succeeded" and rerun["id"] != first["id"]
    assert not rerun["cached"]  # run again on a node, not answered from the cache
    assert (work / "outputs" / "token.txt").read_text() != token
