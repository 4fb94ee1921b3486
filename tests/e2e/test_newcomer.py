"""Issue 20: the command line as a newcomer meets it, one test (or more) per item."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rgrid.paths import command_server_socket
from tests.e2e.conftest import Cli, isolated_env
from tests.e2e.test_command_server import wait_for
from tests.e2e.test_errors import one_clear_line

pytestmark = pytest.mark.e2e

MARKER = """
import sys
open("ran.txt", "w").write(" ".join(sys.argv[1:]))
print("args:", sys.argv[1:])
"""


def in_pty(cli: Cli, *args: str, cwd: Path, columns: int = 80) -> tuple[int, str]:
    """Run rgrid with stderr and stdout on a terminal `columns` wide; its code and output."""
    leader, follower = pty.openpty()
    env = {**cli.env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rgrid", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process has gone
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def plain(text: str) -> list[str]:
    """Terminal output as the lines a user sees last (escape codes and redraws removed)."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    return [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]


# 1. Unknown options


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--paralel", "3"], "unknown option --paralel: did you mean --parallel?"),
        (["--dry-rn"], "unknown option --dry-rn: did you mean --dry-run?"),
        (["--retires", "2"], "unknown option --retires: did you mean --retries?"),
    ],
)
def test_a_near_miss_of_a_known_option_is_refused_and_nothing_runs(
    cli: Cli, work: Path, args: list[str], expected: str
) -> None:
    (work / "job.py").write_text(MARKER)
    result = cli("run", "job.py", *args, cwd=work)
    assert result.code == 125
    assert expected in one_clear_line(result.stderr)
    assert not (work / "outputs").exists()


def test_an_unknown_option_before_the_script_is_refused(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text(MARKER)
    result = cli("run", "--verbose", "job.py", cwd=work)
    assert result.code == 125
    assert "unknown option --verbose before the script" in one_clear_line(result.stderr)


def test_script_options_pass_after_the_script_and_after_double_dash(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text(MARKER)
    result = cli("run", "job.py", "--verbose", "--", "--paralel", "3", cwd=work)
    assert result.code == 0, result.stderr
    assert (work / "outputs" / "ran.txt").read_text() == "--verbose --paralel 3"


def test_estimate_cost_prints_the_estimate_and_starts_nothing(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text(MARKER)
    (work / "data").mkdir()
    for i in range(3):
        (work / "data" / f"{i}.csv").write_text(str(i))
    result = cli("run", "job.py", "--batch", "data/*.csv", "--estimate-cost", cwd=work)
    assert result.code == 0, result.stderr
    assert "estimate" in result.stdout and "for 3 run(s)" in result.stdout
    assert "nothing was started" in result.stdout
    assert not (work / "outputs").exists()


def test_project_option_counts_the_run_under_that_project(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text(MARKER + "# rgrid: no-cache\n")
    run = cli("run", "job.py", "--project", "my-project", "--json", cwd=work)
    assert run.code == 0, run.stderr
    status = cli("status", run.json()["id"], "--json", cwd=work)  # type: ignore[index]
    assert status.json()["project"] == "my-project"  # type: ignore[index]


# 2. Parallelism above the nodes' slots


def test_parallel_above_the_slots_shows_the_effective_value_and_why(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text("print('x')\n# rgrid: no-cache\n")
    (work / "data").mkdir()
    for i in range(3):
        (work / "data" / f"{i}.txt").write_text(str(i))
    result = cli("run", "job.py", "--batch", "data/*.txt", "--parallel", "3", cwd=work)
    assert result.code == 0, result.stderr
    assert "3 items, parallel 2" in result.stderr
    assert "parallel 2, not 3: the nodes allow 2 at once" in result.stderr
    estimate = cli("estimate", "job.py", "--files", "3", "--parallel", "3", cwd=work)
    assert "parallel 2, not 3" in estimate.stderr
    assert "2 at a time" in estimate.stdout


def test_parallel_within_the_slots_says_nothing_more(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text("print('x')\n")
    (work / "a.txt").write_text("a")
    result = cli("run", "job.py", "--batch", "a.txt", "--parallel", "2", cwd=work)
    assert result.code == 0, result.stderr
    assert "parallel 2" in result.stderr and "not " not in result.stderr


# 3. Through the command server


def test_usage_lines_name_rgrid_through_the_command_server(cli: Cli, work: Path) -> None:
    assert command_server_socket(cli.home).exists()
    result = cli("--help", cwd=work)
    assert "Usage: rgrid [OPTIONS] COMMAND" in result.stdout
    bad = cli("run", cwd=work)
    assert "see `rgrid run --help`" in one_clear_line(bad.stderr)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_downloaded_outputs_follow_the_callers_umask(
    cli: Cli, work: Path, umask: int, mode: int
) -> None:
    (work / "job.py").write_text(f"open('out.txt', 'w').write('{umask}')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rgrid", "run", "job.py"],
        cwd=work,
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "outputs" / "out.txt").stat().st_mode & 0o777 == mode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_the_command_server_refuses_another_users_connection(cli: Cli, work: Path) -> None:
    path = command_server_socket(cli.home)
    wait_for(path.exists, 120)  # the stack starts its command server after it is ready
    # A hard link where the other user can reach it, the socket's mode opened: only the
    # peer-credential check stands in the way now.
    reachable = Path(tempfile.mkdtemp(prefix="rgrid-peer-"))  # in /tmp, opened below
    reachable.chmod(0o755)
    os.link(path, reachable / "cli.sock")
    os.chmod(path, 0o666)
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(reachable / 'cli.sock')!r})\n"
        "s.settimeout(20)\n"
        "try:\n"
        "    socket.send_fds(s, [b'{}'], [0])\n"
        "    got = s.recv(100)\n"
        "except (BrokenPipeError, ConnectionResetError):  # closed on us at once\n"
        "    got = b''\n"
        "sys.stdout.write(repr(got))\n"
    )
    try:
        proc = subprocess.run(
            ["/usr/bin/python3", "-c", probe],  # one the other user may run
            capture_output=True,
            text=True,
            timeout=60,
            user=65534,
            group=65534,
            extra_groups=[],
        )
    finally:
        os.chmod(path, 0o600)
        shutil.rmtree(reachable)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "b''"  # closed without a word: no pid, no command


# 4. 80 columns


def test_list_and_nodes_fit_80_columns_and_never_cut_ids(cli: Cli, work: Path) -> None:
    (work / "a_rather_long_script_name.py").write_text("print('hello')\n# rgrid: no-cache\n")
    run = cli("run", "a_rather_long_script_name.py", "-m", "team=data", "--json", cwd=work)
    execution_id = run.json()["id"]  # type: ignore[index]
    for args, whole in ((["list"], execution_id), (["nodes"], "local-1@")):
        code, output = in_pty(cli, *args, cwd=work)
        assert code == 0, output
        lines = [line for line in plain(output) if line.strip()]
        assert all(len(line) <= 80 for line in lines), lines
        assert "…" not in output
        assert any(whole in line for line in lines)
    code, output = in_pty(cli, "list", cwd=work)
    assert any(execution_id in line and "succeeded" in line for line in plain(output))


def test_the_batch_bar_fits_80_columns_with_elapsed_and_eta(cli: Cli, work: Path) -> None:
    (work / "job.py").write_text("import time\ntime.sleep(0.5)\n# rgrid: no-cache\n")
    (work / "data").mkdir()
    for i in range(4):
        (work / "data" / f"{i}.txt").write_text(str(i))
    code, output = in_pty(cli, "run", "job.py", "--batch", "data/*.txt", "--watch", cwd=work)
    assert code == 0, output
    lines = plain(output)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    bar = [line for line in lines if "4/4" in line]
    assert bar and re.search(r"\d:\d\d:\d\d eta (\d:\d\d:\d\d|-:--:--)", bar[-1]), bar
    assert any("4 ok" in line and "parallel 2" in line for line in lines)


# 5. Cold start and dev stop


def test_dev_stop_of_nothing_answers_at_once(tmp_path: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    result = cli("dev", "stop")
    assert (result.code, result.stdout) == (0, "not running\n")


def test_a_cold_start_shows_each_step_and_submits_once_temporal_answers(
    tmp_path: Path, work: Path
) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    (work / "ok.py").write_text("print('ok')\n")
    try:
        code, output = in_pty(cli, "run", "ok.py", cwd=work)
        assert code == 0, output
        up = output.index("embedded stack up")
        assert re.search(r"embedded stack up in \d+\.\ds", output)
        for step in ("temporal starting", "control starting", "temporal ready"):
            assert -1 < output.find(step) < up, step
        assert up < output.index("exec-")  # submitted once Temporal answers
    finally:
        cli("dev", "stop", timeout=60)


def test_two_first_runs_at_once_share_one_stack(tmp_path: Path, work: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    (work / "ok.py").write_text("print('ok')\n")
    try:
        runs = [cli.popen("run", "ok.py", cwd=work) for _ in range(2)]
        results = [run.communicate(timeout=240) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], results
        assert all("ok" in stdout.splitlines() for stdout, _ in results)
        supervisors = (cli.home / "dev" / "stack.log").read_text().count('"stack_ready"')
        assert supervisors == 1
    finally:
        cli("dev", "stop", timeout=60)


# 6. Small lies and gaps


def test_logs_of_a_cached_run_print_the_source_runs_logs_under_a_note(cli: Cli, work: Path) -> None:
    (work / "cached.py").write_text("print('computed once')\n")
    first = cli("run", "cached.py", "--json", cwd=work)
    second = cli("run", "cached.py", "--json", cwd=work)
    source, copy = first.json(), second.json()
    assert copy["cached"] is True  # type: ignore[index]
    logs = cli("logs", copy["id"], cwd=work)  # type: ignore[index]
    assert logs.code == 0
    assert logs.stdout == "computed once\n"
    assert f"the output of {source['cached_from'] or source['id']}" in logs.stderr  # type: ignore[index]


def test_logs_mark_each_attempt(cli: Cli, work: Path) -> None:
    (work / "flaky.py").write_text("print('trying')\nraise SystemExit(3)\n")
    run = cli("run", "flaky.py", "--retries", "1", "--json", cwd=work)
    assert run.json()["attempts"] == 2  # type: ignore[index]
    logs = cli("logs", run.json()["id"], cwd=work)  # type: ignore[index]
    assert logs.stdout == "trying\ntrying\n"
    assert "── attempt 1 ──" in logs.stderr and "── attempt 2 ──" in logs.stderr


def test_retrying_failed_items_that_fail_again_claims_no_outputs(cli: Cli, work: Path) -> None:
    (work / "half.py").write_text(
        "import sys\nif 'bad' in sys.argv[-1]:\n    sys.exit(4)\nopen('o.txt','w').write('ok')\n"
    )
    (work / "data").mkdir()
    for name in ("good1", "good2", "bad1", "bad2"):
        (work / "data" / f"{name}.txt").write_text(name)
    first = cli("run", "half.py", "--batch", "data/*.txt", cwd=work)
    assert first.code == 1
    batch_id = first.stderr.split(":")[0].strip()
    assert batch_id.startswith("batch-"), first.stderr
    retry = cli("retry", batch_id, "--failed-only", cwd=work)
    assert retry.code == 1
    assert "2 failed item(s) queued again" in retry.stderr
    assert "output file(s)" not in retry.stderr
    assert "2 failed" in retry.stderr


def test_nothing_to_retry_is_one_line_at_once(cli: Cli, work: Path) -> None:
    (work / "fine.py").write_text("print('fine')\n")
    (work / "a.txt").write_text("a")
    first = cli("run", "fine.py", "--batch", "a.txt", cwd=work)
    batch_id = first.stderr.split(":")[0].strip()
    retry = cli("retry", batch_id, "--failed-only", cwd=work, timeout=60)
    assert retry.code == 125
    assert "has no failed items" in one_clear_line(retry.stderr)


def test_show_output_prefixes_each_items_lines_with_its_input(cli: Cli, work: Path) -> None:
    (work / "say.py").write_text(
        "import sys\nname = open(sys.argv[-1]).read()\nprint('hello', name)\nprint('bye', name)\n"
    )
    (work / "data").mkdir()
    for name in ("ann", "bob"):
        (work / "data" / f"{name}.txt").write_text(name)
    result = cli("run", "say.py", "--batch", "data/*.txt", "--show-output", cwd=work)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("ann", "bob"):
        assert f"data/{name}.txt | hello {name}" in lines
        assert f"data/{name}.txt | bye {name}" in lines


def test_a_killed_script_names_its_memory_limit(cli: Cli, work: Path) -> None:
    (work / "killed.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = cli("run", "killed.py", "--memory", "256m", "--json", cwd=work)
    error = result.json()["error"]  # type: ignore[index]
    assert result.json()["exit_code"] in (137, -9), error  # type: ignore[index]
    assert "out of memory at its 256 MB limit" in error and "--memory" in error


# 7. Conventions


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flags(cli: Cli, flag: str) -> None:
    result = cli(flag)
    assert result.code == 0 and result.stdout.startswith("rgrid ")


def test_shell_completion_is_offered(cli: Cli) -> None:
    # What the installed bash completion asks the program (click's protocol).
    result = cli(_RGRID_COMPLETE="complete_bash", COMP_WORDS="rgrid ru", COMP_CWORD="1")
    assert result.code == 0
    assert result.stdout.split() == ["run"]


def test_dev_status_and_download_list_speak_json(cli: Cli, work: Path) -> None:
    status = cli("dev", "status", "--json")
    assert status.code == 0
    assert status.json()["running"] is True  # type: ignore[index]
    (work / "w.py").write_text("open('w.txt', 'w').write('w')\n")
    run = cli("run", "w.py", "--remote-only", "--json", cwd=work)
    listed = cli("download", run.json()["id"], "--list", "--json", cwd=work)  # type: ignore[index]
    assert [o["path"] for o in listed.json()] == ["w.txt"]  # type: ignore[union-attr]


def test_init_says_what_to_do_next(tmp_path: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    result = cli("init")
    assert result.code == 0
    assert "next: `rgrid run" in result.stdout and "`rgrid config`" in result.stdout


def test_the_original_cost_spellings_work(cli: Cli, work: Path) -> None:
    last = cli("cost", "--last", "7d", "--json")
    since = cli("cost", "--since", "7d", "--json")
    assert last.code == since.code == 0, last.stderr
    assert json.loads(last.stdout).keys() == json.loads(since.stdout).keys()
    (work / "c.py").write_text("print('c')\n")
    run = cli("run", "c.py", "--json", cwd=work)
    execution_id = run.json()["id"]  # type: ignore[index]
    aliased = cli("cost", "--execution", execution_id, "--json")
    direct = cli("cost", execution_id, "--json")
    assert aliased.code == 0, aliased.stderr
    assert aliased.json() == direct.json()


# 8. Clean errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "batch-doesnotexist"], "no batch 'batch-doesnotexist'"),
        (["run", "ok.py", "--retries", "-1"], "Invalid value for '--retries'"),
        (["run", "ok.py", "--cpus", "-1"], "Invalid value for '--cpus'"),
    ],
)
def test_unclean_errors_are_one_line(cli: Cli, work: Path, args: list[str], expected: str) -> None:
    (work / "ok.py").write_text("print('ok')\n")
    result = cli(*args, cwd=work)
    assert result.code != 0
    assert expected in one_clear_line(result.stderr)
