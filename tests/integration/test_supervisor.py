"""The supervisor on real processes: restarts with a budget, children and whatever they
start die with it, a dead child's orphans are ended, records survive pid reuse."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rgrid.client.stack import end_recorded
from rgrid.infra import processes
from rgrid.models.stack import ChildState, ProcessRef, SupervisorState
from rgrid.worker.supervisor import ChildSpec, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]
# Starts a grandchild in a session of its own (as the process runtime starts scripts),
# writes its pid, then sleeps.
PARENT_OF_SCRIPT = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "p = subprocess.Popen(['sleep', '600'], start_new_session=True); "
    "open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(600)",
]


def alive(pid: int) -> bool:
    # A zombie is dead for our purposes: it runs nothing.
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False


async def until(condition, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.05)


async def supervise(sup: Supervisor) -> tuple[asyncio.Event, asyncio.Task[None]]:
    sup.start_all()
    stop = asyncio.Event()
    return stop, asyncio.create_task(sup.run(stop))


async def test_a_child_that_keeps_exiting_is_restarted_until_its_budget_is_spent(
    tmp_path: Path,
) -> None:
    log = tmp_path / "bad.log"
    spec = ChildSpec("bad", "agent", ["sh", "-c", "echo cannot open the work dir; exit 3"], log)
    sup = Supervisor([spec], tmp_path / "children.json", budget=3, backoff_first_s=0.01)
    stop, task = await supervise(sup)
    await until(lambda: sup.status()[0].state is ChildState.GAVE_UP)
    stop.set()
    await task
    status = sup.status()[0]
    assert status.restarts == 3  # the budget, exactly: 1 start + 3 restarts
    assert status.last_exit_code == 3
    assert status.last_exit_reason == "cannot open the work dir"
    sup.stop_all()


async def test_a_killed_child_is_started_again_and_the_record_says_why(tmp_path: Path) -> None:
    sup = Supervisor(
        [ChildSpec("worker", "control", SLEEPER, tmp_path / "w.log")],
        tmp_path / "children.json",
        backoff_first_s=0.01,
    )
    stop, task = await supervise(sup)
    first = sup.status()[0].process
    assert first is not None
    os.kill(first.pid, signal.SIGKILL)
    await until(lambda: (p := sup.status()[0].process) is not None and p.pid != first.pid)
    await until(lambda: (tmp_path / "children.json").is_file())
    recorded = SupervisorState.model_validate_json((tmp_path / "children.json").read_text())
    stop.set()
    await task
    sup.stop_all()
    child = recorded.children[0]
    assert child.restarts == 1 and child.last_exit_code == -signal.SIGKILL
    assert child.state is ChildState.RUNNING
    assert not alive(sup_pid(child.process))


def sup_pid(ref: ProcessRef | None) -> int:
    assert ref is not None
    return ref.pid


async def test_a_dead_childs_scripts_in_their_own_session_are_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "script.pid"
    sup = Supervisor(
        [ChildSpec("agent", "agent", [*PARENT_OF_SCRIPT, str(pid_file)], tmp_path / "a.log")],
        tmp_path / "children.json",
        budget=0,
    )
    stop, task = await supervise(sup)
    await until(lambda: pid_file.is_file() and pid_file.read_text())
    script = int(pid_file.read_text())
    agent = sup.status()[0].process
    assert agent is not None and alive(script)
    os.kill(agent.pid, signal.SIGKILL)
    await until(lambda: not alive(script))
    stop.set()
    await task
    sup.stop_all()


async def test_the_host_processs_own_children_are_never_taken_for_orphans(
    tmp_path: Path,
) -> None:
    # A test runner's Temporal server is a child of the process the supervisor runs in.
    server = subprocess.Popen(SLEEPER)
    sup = Supervisor(
        [ChildSpec("agent", "agent", SLEEPER, tmp_path / "a.log")], tmp_path / "children.json"
    )
    stop, task = await supervise(sup)
    try:
        await asyncio.sleep(3)  # several reaping rounds
        assert server.poll() is None
    finally:
        stop.set()
        await task
        sup.stop_all()
        server.kill()
        server.wait()


def test_children_die_with_a_supervisor_killed_9(tmp_path: Path) -> None:
    # The supervisor in a process of its own, so it can be killed -9.
    code = (
        "import asyncio, sys; from pathlib import Path; "
        "from rgrid.worker.supervisor import ChildSpec, Supervisor; "
        f"specs = [ChildSpec('c', 'control', {SLEEPER!r}, Path(sys.argv[1]) / 'c.log')]; "
        "sup = Supervisor(specs, Path(sys.argv[1]) / 'children.json'); "
        "sup.start_all(); asyncio.run(sup.run(asyncio.Event()))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    record = tmp_path / "children.json"
    deadline = time.monotonic() + 60
    while not record.is_file():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    child = SupervisorState.model_validate_json(record.read_text()).children[0].process
    assert child is not None and alive(child.pid)
    proc.kill()
    proc.wait()
    assert processes.wait_gone(lambda: alive(child.pid), 30)


def test_a_record_ends_what_still_runs_and_never_a_reused_pid(tmp_path: Path) -> None:
    orphan = subprocess.Popen(SLEEPER, start_new_session=True)
    stranger = subprocess.Popen(SLEEPER, start_new_session=True)
    ticks = processes.start_ticks(orphan.pid)
    stranger_ticks = processes.start_ticks(stranger.pid)
    assert ticks is not None and stranger_ticks is not None
    record = tmp_path / "children.json"
    record.write_text(
        SupervisorState(
            supervisor=ProcessRef(pid=orphan.pid, start_ticks=ticks),
            started_at=time.time(),
            children=[
                # The same pid, another start time: a process that reused a recorded pid.
                {
                    "name": "old",
                    "kind": "agent",
                    "log": "x",
                    "process": {"pid": stranger.pid, "start_ticks": stranger_ticks - 1},
                },
            ],
        ).model_dump_json()
    )
    assert end_recorded(record) == ["supervisor"]
    assert orphan.wait(timeout=30) == -signal.SIGKILL
    assert stranger.poll() is None
    stranger.kill()
    stranger.wait()
    assert not record.exists()
