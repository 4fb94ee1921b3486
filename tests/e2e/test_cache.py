"""The result cache and in-flight dedup, through the real CLI on the embedded stack.

Scripts count their own runs on a loopback endpoint the test owns (tests/run_counter.py),
so "never reached a node" is observed, not inferred."""

from __future__ import annotations

import shutil
import socket
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.run_counter import RunCounter

pytestmark = pytest.mark.e2e

COUNTING = """
import os, sys, urllib.request
urllib.request.urlopen(os.environ["COUNTER_URL"] + "/run").read()
text = open(sys.argv[1]).read() if len(sys.argv) > 1 else "none"
print("input says", text.strip())
if text.strip() == "bad":
    sys.exit(3)
os.makedirs("out", exist_ok=True)
open("out/result.txt", "w").write(text.upper())
"""


def counting_script(work: Path, counter: RunCounter, extra: str = "") -> RunCounter:
    (work / "job.py").write_text(textwrap.dedent(COUNTING) + extra)
    return counter


def runs(counter: RunCounter) -> int:
    return counter.count("run")


def test_an_identical_run_is_served_from_cache_without_a_node(
    cli: Cli, work: Path, run_counter: RunCounter
) -> None:
    counter = counting_script(work, run_counter)
    (work / "in.txt").write_text("hello")
    first = cli("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt", cwd=work)
    assert first.code == 0, first.stderr
    first_id = first.stderr.splitlines()[0]
    shutil.rmtree(work / "outputs")

    second = cli("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt", cwd=work)
    assert second.code == 0, second.stderr
    second_id = second.stderr.splitlines()[0]
    assert runs(counter) == 1  # the script did not run again
    assert second_id != first_id  # a cached run is an execution of its own
    assert f"cached: same inputs as {first_id} (use --no-cache to run again)" in second.stderr
    assert "input says hello" in second.stdout  # the original run's output, replayed
    assert (work / "outputs" / "out" / "result.txt").read_text() == "HELLO"

    status = cli("status", second_id, "--json").json()
    assert isinstance(status, dict)
    assert status["phase"] == "succeeded" and status["cached"] is True
    assert status["cost_microns"] == 0 and status["node_id"] is None
    assert status["cached_from"] == first_id
    downloaded = cli("download", second_id, "-o", str(work / "again"))
    assert downloaded.code == 0, downloaded.stderr
    assert (work / "again" / "out" / "result.txt").read_text() == "HELLO"

    fresh = cli(
        "run", "--no-cache", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt", cwd=work
    )
    assert fresh.code == 0 and runs(counter) == 2
    assert "cached:" not in fresh.stderr
    third = cli("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt", cwd=work)
    fresh_id = fresh.stderr.splitlines()[0]
    assert runs(counter) == 2 and f"same inputs as {fresh_id}" in third.stderr  # refreshed


def test_a_changed_input_or_a_failed_run_or_a_marker_runs_again(
    cli: Cli, work: Path, run_counter: RunCounter
) -> None:
    counter = counting_script(work, run_counter)
    (work / "in.txt").write_text("bad")
    args = ("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt")
    assert cli(*args, cwd=work).code == 3
    assert cli(*args, cwd=work).code == 3  # failures are not cached
    assert runs(counter) == 2
    (work / "in.txt").write_text("good")
    assert cli(*args, cwd=work).code == 0
    assert cli(*args, cwd=work).code == 0
    assert runs(counter) == 3

    counting_script(work, run_counter, extra="# rgrid: no-cache\n")  # side effects: never cached
    assert cli(*args, cwd=work).code == 0
    assert cli(*args, cwd=work).code == 0
    assert runs(counter) == 5


def test_outputs_gone_from_storage_force_a_real_run(
    cli: Cli, work: Path, run_counter: RunCounter
) -> None:
    counter = counting_script(work, run_counter)
    (work / "in.txt").write_text("expiring")
    args = ("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt")
    first = cli(*args, cwd=work)
    assert first.code == 0, first.stderr
    # What the retention rule does to an execution's outputs.
    shutil.rmtree(cli.home / "storage" / "outputs" / first.stderr.splitlines()[0])
    again = cli(*args, cwd=work)
    assert again.code == 0, again.stderr
    assert runs(counter) == 2 and "cached:" not in again.stderr
    assert (work / "outputs" / "out" / "result.txt").read_text() == "EXPIRING"


# Holds its run until the test lets it go: it connects to the test's gate and waits.
HELD = """
import os, socket
with socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"]))) as gate:
    gate.recv(2)
os.makedirs("out", exist_ok=True)
open("out/result.txt", "w").write(open("in.txt").read().upper())
"""


def test_two_identical_runs_in_flight_share_one_execution(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text(HELD)
    (work / "in.txt").write_text("shared")
    with socket.socket() as gate:
        gate.bind(("127.0.0.1", 0))
        gate.listen()
        gate.settimeout(120)
        args = ("run", "-e", f"GATE_PORT={gate.getsockname()[1]}", "job.py", "in.txt")
        first = cli.popen(*args, cwd=work)
        held, _ = gate.accept()  # the first run's script is running, and waits
        second = cli.popen(*args, cwd=work)
        assert first.stderr is not None and second.stderr is not None
        # Each client names its execution before it waits: the second joined the first.
        first_id, second_id = first.stderr.readline().strip(), second.stderr.readline().strip()
        assert first_id.startswith("exec-") and second_id == first_id
        held.sendall(b"go")
        held.close()
        for proc in (first, second):
            proc.communicate(timeout=120)
            assert proc.returncode == 0
        gate.setblocking(False)
        with pytest.raises(BlockingIOError):
            gate.accept()  # the script ran once: no second run ever knocked
    assert (work / "outputs" / "out" / "result.txt").read_text() == "SHARED"
    listed = cli("list", "--json", "-n", "50").json()
    assert isinstance(listed, list)
    assert sum(1 for e in listed if e["execution_id"] == first_id) == 1


def test_a_batch_rerun_after_a_fix_runs_only_the_fixed_item(
    cli: Cli, work: Path, run_counter: RunCounter
) -> None:
    counter = counting_script(work, run_counter)
    data = work / "data"
    data.mkdir()
    for name, text in {"a.txt": "alpha", "b.txt": "bad", "c.txt": "gamma"}.items():
        (data / name).write_text(text)
    args = ("run", "--json", "-e", f"COUNTER_URL={counter.url}", "job.py", "--batch", "data/*.txt")
    first = cli(*args, cwd=work)
    assert first.code != 0 and runs(counter) == 3
    (data / "b.txt").write_text("beta")
    second = cli(*args, cwd=work)
    assert second.code == 0, second.stderr
    assert runs(counter) == 4  # only the fixed item ran
    progress = second.json()
    assert isinstance(progress, dict)
    assert progress["cached"] == 2 and progress["succeeded"] == 1
    for stem, text in {"a": "ALPHA", "b": "BETA", "c": "GAMMA"}.items():
        assert (work / "outputs" / stem / "out" / "result.txt").read_text() == text


def test_cache_ls_rm_and_clear(cli: Cli, work: Path, run_counter: RunCounter) -> None:
    counter = counting_script(work, run_counter)
    (work / "in.txt").write_text("listed")
    args = ("run", "-e", f"COUNTER_URL={counter.url}", "job.py", "in.txt")
    assert cli(*args, cwd=work).code == 0
    dry = cli("run", "--dry-run", "--json", *args[1:], cwd=work).json()
    assert isinstance(dry, dict)
    key = dry["cache_key"]
    entries = cli("cache", "ls", "--json").json()
    assert isinstance(entries, list)
    assert key in [e["key"] for e in entries]

    removed = cli("cache", "rm", key[:12])
    assert removed.code == 0 and key in removed.stdout
    assert cli(*args, cwd=work).code == 0 and runs(counter) == 2  # forgotten: ran again
    assert cli("cache", "clear", "--older-than", "1d").stdout.strip() == "removed 0 entries"
    assert cli("cache", "clear").code == 0
    assert cli("cache", "ls", "--json").json() == []
    short = cli("cache", "rm", "abc")
    assert short.code == 125 and "too short" in short.stderr
