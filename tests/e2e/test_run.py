"""`rgrid run` as a user types it, on the embedded stack."""

from __future__ import annotations

import shutil
import signal
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e


def script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def test_run_streams_output_downloads_outputs_and_reports_cost(cli: Cli, work: Path) -> None:
    script(
        work,
        "hello.py",
        """
        import os, sys
        print("hello from", os.environ["RGRID_EXECUTION_ID"])
        print("a warning", file=sys.stderr)
        os.makedirs("out/deep", exist_ok=True)
        open("out/deep/result.txt", "w").write("42\\n")
    """,
    )
    result = cli("run", "hello.py", cwd=work)
    assert result.code == 0, result.stderr
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("exec-")
    assert f"hello from {first_line}" in result.stdout
    assert "a warning" in result.stderr
    assert "succeeded" in result.stderr and "cost €0.00" in result.stderr
    assert (work / "outputs" / "out" / "deep" / "result.txt").read_text() == "42\n"
    assert not (work / "outputs" / "hello.py").exists()


def test_file_arguments_are_uploaded_and_inputs_are_not_outputs(cli: Cli, work: Path) -> None:
    script(
        work,
        "count.py",
        """
        import sys
        words = sum(len(open(p).read().split()) for p in sys.argv[1:])
        open("count.txt", "w").write(str(words))
        print(sys.argv[1:])
    """,
    )
    (work / "data").mkdir()
    (work / "data" / "doc.txt").write_text("one two three\n")
    (work / "extra.csv").write_text("a,b\n")
    result = cli("run", "count.py", "data/doc.txt", "-i", "extra.csv", "--json", cwd=work)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert payload["status"] == "succeeded"
    assert payload["exit_code"] == 0
    assert payload["cost_microns"] == 0
    assert payload["duration_s"] > 0
    assert [Path(p).name for p in payload["outputs"]] == ["count.txt"]
    assert (work / "outputs" / "count.txt").read_text() == "3"


def test_second_run_of_same_inputs_uploads_nothing(cli: Cli, work: Path) -> None:
    script(work, "same.py", "print('same')\n")
    (work / "in.txt").write_text("payload " * 1000)
    first = cli("run", "same.py", "in.txt", "--json", cwd=work)
    second = cli("run", "same.py", "in.txt", "--json", cwd=work)
    assert first.code == second.code == 0
    assert second.json()["uploaded_files"] == 0
    assert second.json()["already_stored_files"] == 2
    assert first.json()["id"] != second.json()["id"]


def test_failing_script_propagates_exit_code_and_shows_stderr(cli: Cli, work: Path) -> None:
    script(
        work,
        "fail.py",
        """
        import sys
        open("partial.txt", "w").write("kept")
        print("something broke", file=sys.stderr)
        sys.exit(3)
    """,
    )
    result = cli("run", "fail.py", cwd=work)
    assert result.code == 3
    assert "something broke" in result.stderr
    assert "failed" in result.stderr and "exited with code 3" in result.stderr
    assert (work / "outputs" / "partial.txt").read_text() == "kept"
    assert "Traceback" not in result.stderr


def test_timeout_kills_the_script(cli: Cli, work: Path) -> None:
    script(
        work,
        "slow.py",
        """
        import time
        print("started", flush=True)
        time.sleep(60)
    """,
    )
    began = time.monotonic()
    result = cli("run", "slow.py", "--timeout", "2s", "--json", cwd=work)
    assert time.monotonic() - began < 30
    assert result.code == 124
    assert result.json()["status"] == "timed_out"


def _pids_with(marker: str) -> list[int]:
    """Processes on this machine whose environment carries the test's own marker (the
    script's pid inside a sandbox's pid namespace would not be the host's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"RGRID_TEST_MARK={marker}".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_cancel_stops_a_running_script_within_seconds(cli: Cli, work: Path) -> None:
    script(work, "forever.py", "import time\nwhile True:\n    time.sleep(0.1)\n")
    marker = uuid.uuid4().hex
    started = cli("run", "forever.py", "--detach", "-e", f"RGRID_TEST_MARK={marker}", cwd=work)
    assert started.code == 0, started.stderr
    execution_id = started.stdout.strip()
    deadline = time.monotonic() + 60
    while not _pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_with(marker), "the script never started"
    began = time.monotonic()
    cancelled = cli("cancel", execution_id)
    assert cancelled.code == 0, cancelled.stderr
    assert "cancelled" in cancelled.stderr
    assert time.monotonic() - began < 10
    assert _pids_with(marker) == []
    status = cli("status", execution_id, "--json")
    assert status.json()["phase"] == "cancelled"


def test_symlinks_in_the_work_dir_are_not_collected(cli: Cli, work: Path) -> None:
    secret = work / "secret.txt"
    secret.write_text("do not copy")
    script(
        work,
        "links.py",
        f"""
        import os
        os.symlink({str(secret)!r}, "leak.txt")
        os.symlink("/", "rootdir")
        open("real.txt", "w").write("ok")
    """,
    )
    result = cli("run", "links.py", "--json", cwd=work)
    assert result.code == 0, result.stderr
    assert [Path(p).name for p in result.json()["outputs"]] == ["real.txt"]
    assert not (work / "outputs" / "leak.txt").exists()


def test_status_logs_and_list_after_the_run(cli: Cli, work: Path) -> None:
    script(
        work,
        "talk.py",
        """
        import sys
        print("to stdout")
        print("to stderr", file=sys.stderr)
    """,
    )
    run = cli("run", "talk.py", "-m", "team=geo", "--json", cwd=work)
    execution_id = run.json()["id"]

    status = cli("status", execution_id)
    assert "succeeded" in status.stdout and "local-1" in status.stdout
    assert "team=geo" in status.stdout

    logs = cli("logs", execution_id, "--stdout-only")
    assert logs.stdout == "to stdout\n" and logs.stderr == ""
    logs = cli("logs", execution_id, "--stderr-only")
    assert logs.stderr == "to stderr\n" and logs.stdout == ""

    listed = cli("list", "-m", "team=geo", "--json")
    assert [row["execution_id"] for row in listed.json()] == [execution_id]
    newest = cli("list", "-n", "1", "--json").json()
    assert newest[0]["execution_id"] == execution_id
    (work / "fails.py").write_text("raise SystemExit(3)\n# rgrid: no-cache\n")
    failing = cli("run", "fails.py", "--json", cwd=work).json()["id"]
    failed_only = cli("list", "-s", "failed", "--json").json()
    ids = [row["execution_id"] for row in failed_only]
    assert failing in ids and execution_id not in ids  # the failure listed, the success not
    assert {row["phase"] for row in failed_only} == {"failed"}


def test_logs_follow_tails_a_running_execution_to_its_end(cli: Cli, work: Path) -> None:
    script(
        work,
        "ticks.py",
        """
        import time
        for i in range(3):
            print("tick", i, flush=True)
            time.sleep(0.5)
    """,
    )
    started = cli("run", "ticks.py", "--detach", cwd=work)
    execution_id = started.stdout.strip()
    followed = cli("logs", execution_id, "--follow", timeout=60)
    assert followed.stdout == "tick 0\ntick 1\ntick 2\n"


def test_ctrl_c_stops_watching_but_the_run_goes_on(cli: Cli, work: Path) -> None:
    script(
        work,
        "steady.py",
        """
        import time
        print("begun", flush=True)
        time.sleep(3)
        open("finished.txt", "w").write("yes")
    """,
    )
    proc = cli.popen("run", "steady.py", cwd=work)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "begun\n"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    execution_id = stderr.splitlines()[0]
    assert "it keeps running" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 30
    while cli("status", execution_id, "--json").json()["phase"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.3)


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js on this machine")
def test_node_scripts_run_with_node(cli: Cli, work: Path) -> None:
    script(
        work,
        "hello.js",
        """
        const fs = require("fs");
        fs.writeFileSync("from-node.txt", process.version);
        console.log("node says hi");
    """,
    )
    result = cli("run", "hello.js", cwd=work)
    assert result.code == 0, result.stderr
    assert "node says hi" in result.stdout
    assert (work / "outputs" / "from-node.txt").read_text().startswith("v")


def layer_versions(cli: Cli, kind: str = "venv") -> set[Path]:
    """Every complete built version of the node's dependency layers of a kind."""
    found = cli.home.glob(f"nodes/*/cache/layers/{kind}-*/*")
    return {version for version in found if (version / ".complete").exists()}


def venvs(cli: Cli) -> set[Path]:
    return layer_versions(cli, "venv")


def test_detected_dependencies_are_installed_once_and_reused(cli: Cli, work: Path) -> None:
    script(
        work,
        "inline.py",
        """
        # /// script
        # dependencies = ["six==1.17.0"]
        # ///
        import six
        print("six", six.__version__)
    """,
    )
    script(
        work,
        "imports.py",
        """
        import six
        import helper
        print(helper.greet(), six.PY3)
    """,
    )
    script(work, "helper.py", "def greet():\n    return 'hello from a sibling'\n")
    before = venvs(cli)
    first = cli("run", "inline.py", cwd=work, timeout=300)
    assert first.code == 0, first.stderr
    assert "six 1.17.0" in first.stdout
    built = venvs(cli) - before
    assert len(built) == 1
    again = cli("run", "inline.py", cwd=work)
    assert again.code == 0 and venvs(cli) - before == built  # the layer was reused
    scanned = cli("run", "imports.py", cwd=work, timeout=300)
    assert scanned.code == 0, scanned.stderr
    assert "hello from a sibling True" in scanned.stdout


def test_no_cache_builds_the_dependency_layer_again(cli: Cli, work: Path) -> None:
    script(
        work,
        "fresh.py",
        """
        # /// script
        # dependencies = ["six==1.16.0"]
        # ///
        import six, sys
        print("six", six.__version__, sys.argv[1:])
    """,
    )
    assert cli("run", "fresh.py", "a", cwd=work, timeout=300).code == 0
    before = venvs(cli)
    reused = cli("run", "fresh.py", "b", cwd=work)
    assert reused.code == 0 and venvs(cli) == before
    rebuilt = cli("run", "--no-cache", "fresh.py", "b", cwd=work, timeout=300)
    assert rebuilt.code == 0, rebuilt.stderr
    assert "six 1.16.0 ['b']" in rebuilt.stdout and "cached:" not in rebuilt.stderr
    # One new version of one layer, a layer that existed: only this script's, built again.
    (new,) = venvs(cli) - before
    assert new.parent in {version.parent for version in before}


@pytest.mark.skipif(shutil.which("npm") is None, reason="no npm on this machine")
def test_package_json_dependencies_are_installed_once_for_node_scripts(
    cli: Cli, work: Path
) -> None:
    (work / "package.json").write_text('{"dependencies": {"is-number": "^7.0.0"}}')
    script(
        work,
        "check.js",
        "const isNumber = require('is-number');\nconsole.log('cjs', isNumber(5));\n",
    )
    script(
        work, "check.mjs", "import isNumber from 'is-number';\nconsole.log('esm', isNumber('x'));\n"
    )
    first = cli("run", "check.js", cwd=work, timeout=300)
    assert first.code == 0, first.stderr
    assert "cjs true" in first.stdout
    layers = layer_versions(cli, "npm")
    assert len(layers) == 1
    esm = cli("run", "check.mjs", cwd=work)
    assert esm.code == 0, esm.stderr
    assert "esm false" in esm.stdout
    assert layer_versions(cli, "npm") == layers
    assert not list((work / "outputs").glob("**/node_modules"))  # not taken for an output


def test_a_package_json_naming_a_path_is_refused_before_anything_starts(
    cli: Cli, work: Path
) -> None:
    (work / "package.json").write_text('{"dependencies": {"x": "file:../../etc"}}')
    script(work, "sneaky.js", "require('x')\n")
    result = cli("run", "sneaky.js", cwd=work)
    assert result.code == 125
    assert "not a registry version range" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_shows_what_would_happen_and_starts_nothing(cli: Cli, work: Path) -> None:
    script(work, "plan.py", "import yaml\nimport helper\n")
    script(work, "helper.py", "")
    (work / "in.csv").write_text("a\n")
    before = cli("list", "--json").json()
    planned = cli("run", "plan.py", "in.csv", "--dry-run", "--json", cwd=work)
    assert planned.code == 0, planned.stderr
    payload = planned.json()
    assert payload["dependencies"]["requirements"] == ["pyyaml"]
    assert sorted(payload["files"]) == ["helper.py", "in.csv", "plan.py"]
    assert cli("list", "--json").json() == before


def test_an_uninstallable_dependency_fails_clearly_and_is_not_retried(cli: Cli, work: Path) -> None:
    script(
        work,
        "bad.py",
        """
        # /// script
        # dependencies = ["rgrid-no-such-package-exists-0123"]
        # ///
        print("never")
    """,
    )
    result = cli("run", "bad.py", "--json", cwd=work, timeout=300)
    assert result.code == 125
    payload = result.json()
    assert payload["status"] == "failed" and payload["attempts"] == 1
    assert "installing rgrid-no-such-package-exists-0123 failed" in payload["error"]
