"""Hostile scripts on the process runtime: contained by the real bubblewrap sandbox, and
what the fallback (no sandbox on the node) still guarantees."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from ulid import ULID

from rgrid.activities.node_files import walk_regular_files
from rgrid.infra import processes
from rgrid.infra.runtime.base import RunOutcome, RunRequest
from rgrid.infra.runtime.process import ProcessRuntime
from rgrid.infra.runtime.sandbox import probe_bwrap
from rgrid.models.execution import Resources

BWRAP, WHY_NOT = probe_bwrap()
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason=f"no bubblewrap sandbox: {WHY_NOT}")
# The fallback runs the interpreter as nobody only where nobody can reach it.
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Node:
    """A node's dirs, as the agent lays them out, in a dir of the test's own."""

    def __init__(self, root: Path, runtime: ProcessRuntime) -> None:
        self.root = root
        self.home = root / "home"
        self.runtime = runtime
        self.outputs: dict[str, bytes] = {}

    def lease(self, script: str) -> RunRequest:
        lease = self.home / "nodes" / "local-1" / "leases" / str(ULID())
        (lease / "work").mkdir(parents=True)
        (lease / "tmp").mkdir()
        (lease / "work" / "job.py").write_text(textwrap.dedent(script))
        return RunRequest(
            execution_id=f"exec-{ULID()}",
            work_dir=lease / "work",
            tmp_dir=lease / "tmp",
            script="job.py",
            timeout_s=60,
            network=False,
        )

    async def run(self, script: str, **fields: object) -> tuple[RunOutcome, str, RunRequest]:
        request = self.lease(script).model_copy(update=fields)
        output: list[bytes] = []
        outcome = await self.runtime.run(request, lambda _stream, data: output.append(data))
        return outcome, b"".join(output).decode(errors="replace"), request


def _node(sandbox: bool, cgroups: bool = True, allow: bool = False) -> Iterator[Node]:
    # Searchable by others, as a node's dirs are: the fallback's nobody must reach them.
    root = Path(tempfile.mkdtemp(prefix="rgrid-sandbox-test-"))
    root.chmod(0o755)
    home = root / "home"
    (home / "nodes" / "local-1").mkdir(parents=True)
    (home / "ledger.db").write_text("secret ledger")
    (home / "storage").mkdir()
    (home / "storage" / "output.txt").write_text("an earlier run's output")
    runtime = ProcessRuntime(
        cache_dir=home / "nodes" / "local-1" / "cache",
        python=sys.executable if sandbox else SYSTEM_PYTHON,
        sandbox=sandbox,
        hide=[home],
        cgroups=cgroups,
        allow_unsandboxed=allow,
    )
    try:
        yield Node(root, runtime)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sandboxed() -> Iterator[Node]:
    if BWRAP is None:
        pytest.skip(f"no bubblewrap sandbox: {WHY_NOT}")
    yield from _node(sandbox=True)


@pytest.fixture(params=["sandbox", "fallback", "fallback-no-cgroup"])
def any_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    if request.param == "sandbox" and BWRAP is None:
        pytest.skip(f"no bubblewrap sandbox: {WHY_NOT}")
    yield from _node(
        sandbox=request.param == "sandbox", cgroups=request.param != "fallback-no-cgroup"
    )


def _alive_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


async def test_sandboxed_script_writes_nothing_outside_its_work_dir(sandboxed: Node) -> None:
    home = sandboxed.home
    outcome, out, request = await sandboxed.run(
        f"""
        import os
        for path in ["../../escape.txt", "../escape.txt", {str(home / "abs.txt")!r},
                     {str(home / "nodes/local-1/cache/x")!r}, "/etc/rgrid-x", "/usr/x", "/x"]:
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as exc:
                print("refused", path, exc.errno)
        open("ok.txt", "w").write("mine")
        print("uid", os.getuid())
        """
    )
    assert outcome.exit_code == 0, out
    assert "wrote" not in out
    assert "uid 65534" in out
    assert (request.work_dir / "ok.txt").read_text() == "mine"
    written = {p.name for p in sandboxed.root.rglob("*")}
    assert not {"escape.txt", "abs.txt", "x"} & written
    assert not Path("/etc/rgrid-x").exists() and not Path("/x").exists()


async def test_sandboxed_script_cannot_see_rgrid_home_ledger_storage_or_other_runs(
    sandboxed: Node,
) -> None:
    other = sandboxed.lease("print('other run')")
    (other.work_dir / "theirs.txt").write_text("another run's file")
    targets = [
        sandboxed.home / "ledger.db",
        sandboxed.home / "storage" / "output.txt",
        other.work_dir / "theirs.txt",
    ]
    outcome, out, _ = await sandboxed.run(
        f"""
        import os
        for path in {[str(t) for t in targets]!r}:
            print("visible" if os.path.exists(path) else "invisible", path)
        print("root has", sorted(os.listdir("/")))
        """
    )
    assert outcome.exit_code == 0, out
    assert "visible /" not in out.replace("invisible", "")
    assert out.count("invisible") == 3
    assert (sandboxed.home / "storage" / "output.txt").read_text() == "an earlier run's output"


async def test_sandboxed_script_has_no_network_with_no_network(sandboxed: Node) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        outcome, out, _ = await sandboxed.run(
            f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=5)
                print("connected")
            except OSError as exc:
                print("refused", exc)
            """
        )
    assert outcome.exit_code == 0, out
    assert "refused" in out and "connected" not in out


async def test_hard_link_is_not_collected_as_an_output(any_node: Node) -> None:
    outcome, out, request = await any_node.run(
        """
        import os
        try:
            os.link("/etc/passwd", "passwd")
            print("linked /etc/passwd")
        except OSError as exc:
            print("no link", exc.errno)
        open("a.txt", "w").write("a")
        os.link("a.txt", "b.txt")
        os.symlink("/etc/passwd", "sym")
        open("real.txt", "w").write("real")
        """
    )
    assert outcome.exit_code == 0, out
    skipped: list[str] = []
    collected = [rel for _path, rel in walk_regular_files(request.work_dir, skipped)]
    assert "real.txt" in collected
    assert not {"passwd", "a.txt", "b.txt", "sym"} & set(collected)
    assert {"a.txt", "b.txt", "sym"} <= set(skipped)


async def test_fork_bomb_is_bounded(any_node: Node) -> None:
    outcome, out, _ = await any_node.run(
        """
        import os, time
        started = 0
        for _ in range(300):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                started += 1
            except OSError:
                break
        print("started", started)
        """
    )
    assert outcome.exit_code == 0, out
    started = int(out.split("started")[1].split()[0])
    assert started < 300


async def test_setsid_double_forked_child_is_gone_when_the_run_ends(any_node: Node) -> None:
    marker = f"rgrid-escapee-{ULID()}"
    outcome, out, _ = await any_node.run(
        f"""
        import os, subprocess
        subprocess.Popen(["setsid", "sh", "-c", "sleep 300; : {marker}"],
                         start_new_session=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
        print("left a child")
        """
    )
    assert outcome.exit_code == 0, out
    assert _alive_with(marker) == []


# An agent that runs one script on a node like the test's, and says when it started.
_AGENT = """
import asyncio, sys
from tests.integration.test_process_sandbox import _node

async def main(param, script):
    for node in _node(sandbox=param == "sandbox", cgroups=param != "fallback-no-cgroup"):
        def sink(_stream, data):
            sys.stdout.write(data.decode()); sys.stdout.flush()
        await node.runtime.run(node.lease(script), sink)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_script_dies_with_its_agent(any_node: Node, request: pytest.FixtureRequest) -> None:
    # kill -9 of the agent leaves nobody to end the run: the kernel must (before, a run
    # that dropped root lost its parent-death signal with the uid and ran on unowned).
    param = request.node.callspec.params["any_node"]
    marker = f"rgrid-orphan-{ULID()}"
    script = (
        "import os; print('started', flush=True); "
        f"os.execvp('sh', ['sh', '-c', 'sleep 300; : {marker}'])"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", _AGENT, param, script],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert agent.stdout is not None
        for line in agent.stdout:
            if b"started" in line:
                break
        started = processes.wait_gone(lambda: not _alive_with(marker), 5)
        assert started, "the script never ran"
    finally:
        agent.kill()
        agent.wait()
    assert processes.wait_gone(lambda: bool(_alive_with(marker)), 5)


async def test_background_child_holding_stdout_does_not_keep_the_run_alive(
    any_node: Node,
) -> None:
    marker = f"rgrid-bg-{ULID()}"
    outcome, out, _ = await any_node.run(
        f"""
        import subprocess
        subprocess.Popen(["sh", "-c", "sleep 300; : {marker}"])  # inherits stdout and stderr
        print("done")
        """,
        timeout_s=120,
    )
    assert outcome.exit_code == 0 and not outcome.timed_out, out
    assert "done" in out
    assert _alive_with(marker) == []


async def test_memory_bound_counts_all_children_and_reports_out_of_memory(
    any_node: Node,
) -> None:
    outcome, out, _ = await any_node.run(
        """
        import os, time
        for _ in range(5):
            if os.fork() == 0:
                block = b"x" * (150 << 20)
                time.sleep(60)
                os._exit(0)
        time.sleep(60)
        """,
        resources=Resources(memory_mb=512),
    )
    assert outcome.out_of_memory, out
    assert outcome.exit_code != 0
    assert "out of memory" in out and "512 MiB" in out


async def test_run_under_the_bound_is_not_called_out_of_memory(any_node: Node) -> None:
    outcome, out, _ = await any_node.run(
        """
        block = b"x" * (100 << 20)
        print("fine", len(block))
        """,
        resources=Resources(memory_mb=512),
    )
    assert outcome.exit_code == 0 and not outcome.out_of_memory, out
    assert "out of memory" not in out


async def test_unsandboxed_run_drops_root_and_warns_once() -> None:
    for node in _node(sandbox=False):
        outcome, out, _ = await node.run("import os; print('uid', os.getuid())")
        assert outcome.exit_code == 0, out
        if os.geteuid() == 0:
            assert "uid 65534" in out
        assert out.count("rgrid: warning: this node runs scripts without isolation") == 1
        assert node.runtime.isolation.startswith("process runtime without isolation")


async def test_unsandboxed_runs_opted_into_print_no_warning() -> None:
    for node in _node(sandbox=False, allow=True):  # as RGRID_ALLOW_UNSANDBOXED=1 does
        outcome, out, _ = await node.run("print('quiet')")
        assert outcome.exit_code == 0, out
        assert "warning" not in out


@needs_bwrap
async def test_sandboxed_runtime_says_it_isolates(sandboxed: Node) -> None:
    assert sandboxed.runtime.isolation == "process runtime in a bubblewrap sandbox"
    outcome, out, _ = await sandboxed.run("print('hi')")
    assert outcome.exit_code == 0 and "warning" not in out
