"""Secrets sealed, and Temporal's own tools showing rgrid runs: the issue-15 "done when"
lines, against the real embedded stack, the real `temporal` CLI and the codec server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rgrid.worker.dev import temporal_binary
from tests.e2e.conftest import Cli

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

ENV_ECHO = """
import hashlib, os, sys
both = os.environ["SERVICE_URL"] + "|" + os.environ["API_TOKEN"]
open("seen.txt", "w").write(hashlib.sha256(both.encode()).hexdigest())
print("token is", os.environ["API_TOKEN"])
print("url is", os.environ["SERVICE_URL"], file=sys.stderr)
"""


def temporal(cli: Cli, *args: str) -> str:
    address = f"127.0.0.1:{cli.env['RGRID_DEV_PORT']}"
    done = subprocess.run(
        [temporal_binary(), *args, "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def codec_endpoint(cli: Cli) -> str:
    token = (cli.home / "codec.token").read_text().strip()
    return f"http://127.0.0.1:{cli.env['RGRID_CODEC_PORT']}/{token}"


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def run_env_echo(cli: Cli, work: Path, url: str, token: str, *extra: str) -> dict[str, Any]:
    (work / "env_echo.py").write_text(ENV_ECHO)
    result = cli(
        "run",
        "env_echo.py",
        "--secret",
        "SERVICE_URL",
        "-e",
        f"API_TOKEN={token}",
        "--json",
        *extra,
        cwd=work,
        SERVICE_URL=url,
    )
    assert result.code == 0, result.stderr
    assert url not in result.stdout + result.stderr and token not in result.stdout
    data = result.json()
    assert isinstance(data, dict)
    return data


def test_a_secret_given_both_ways_reaches_the_script_and_is_stored_nowhere_in_plain_text(
    cli: Cli, work: Path
) -> None:
    url, token = f"https://u:{secrets.token_hex(8)}@db", f"tok-{secrets.token_hex(8)}"
    run = run_env_echo(cli, work, url, token)
    # Present in the script's environment: it saw both values.
    seen = (work / "outputs" / "seen.txt").read_text()
    assert seen == hashlib.sha256(f"{url}|{token}".encode()).hexdigest()
    needles = [url.encode(), token.encode()]
    execution_id = run["id"]
    # The Temporal history without the codec (the CLI's JSON decodes nothing of ours).
    shown = temporal(cli, "workflow", "show", "-w", execution_id, "--detailed", "-o", "json")
    assert execution_id in shown and not [n for n in needles if n in shown.encode()]
    # rgrid's status, list and logs.
    for args in (["status", execution_id, "--json"], ["list", "--json"], ["logs", execution_id]):
        result = cli(*args)
        assert result.code == 0, result.stderr
        assert url not in result.stdout + result.stderr
        assert token not in result.stdout + result.stderr
    logs = cli("logs", execution_id)
    assert "token is [secret]" in logs.stdout and "url is [secret]" in logs.stderr
    # Every file under rgrid's home: the dev server's db and WAL, the ledger, stored logs
    # and inputs, the worker and agent logs.
    assert (cli.home / "dev" / "temporal.db").exists()
    assert files_containing(cli.home, needles) == []
    # Through the codec server the input is readable, the secrets masked.
    decoded = payload_texts(
        temporal(
            cli,
            "workflow",
            "show",
            "-w",
            execution_id,
            "-o",
            "json",
            "--codec-endpoint",
            codec_endpoint(cli),
        )
    )
    masked = json.dumps("[secret]")
    assert "env_echo.py" in decoded and f'"API_TOKEN": {masked}' in decoded
    assert f'"SERVICE_URL": {masked}' in decoded
    assert url not in decoded and token not in decoded


def payload_texts(shown: str) -> str:
    """Every payload's data in `temporal workflow show -o json` output, decoded."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and "metadata" in node:
                texts.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shown))
    return "\n".join(texts)


def test_a_changed_secret_misses_the_cache_and_the_same_one_hits(cli: Cli, work: Path) -> None:
    url, token = "https://db.example", f"tok-{secrets.token_hex(8)}"
    first = run_env_echo(cli, work, url, token)
    again = run_env_echo(cli, work, url, token)
    assert again["cached"] and again["cached_from"] == first["id"]
    rotated = run_env_echo(cli, work, url, f"tok-{secrets.token_hex(8)}")
    assert not rotated["cached"]
    other_url = run_env_echo(cli, work, "https://db2.example", token)
    assert not other_url["cached"]


def test_a_secret_missing_from_the_callers_environment_is_one_clear_line(
    cli: Cli, work: Path
) -> None:
    (work / "job.py").write_text("print(1)\n")
    env = {k: v for k, v in cli.env.items() if k != "NOT_EXPORTED"}
    result = Cli(env=env, home=cli.home)("run", "job.py", "--secret", "NOT_EXPORTED", cwd=work)
    assert result.code == 125
    assert "--secret NOT_EXPORTED: NOT_EXPORTED is not set" in result.stderr
    assert "Traceback" not in result.stderr


def post(url: str, body: bytes, headers: dict[str, str], method: str = "POST") -> Any:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_codec_server_decodes_for_a_token_holder_only_and_answers_only_the_uis_origin(
    cli: Cli, work: Path
) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    run = run_env_echo(cli, work, "https://db.example", token, "--no-cache")
    shown = json.loads(temporal(cli, "workflow", "show", "-w", run["id"], "-o", "json"))
    started = shown["events"][0]["workflowExecutionStartedEventAttributes"]
    body = json.dumps({"payloads": started["input"]["payloads"]}).encode()
    endpoint = codec_endpoint(cli)
    base = endpoint.rsplit("/", 1)[0]
    ui = f"http://127.0.0.1:{cli.env['RGRID_DEV_UI_PORT']}"
    json_headers = {"Content-Type": "application/json", "X-Namespace": "default"}

    code, headers, data = post(f"{endpoint}/decode", body, {**json_headers, "Origin": ui})
    assert code == 200 and headers["Access-Control-Allow-Origin"] == ui
    [payload] = json.loads(data)["payloads"]
    spec = json.loads(base64.b64decode(payload["data"]))
    assert spec["script"]["name"] == "env_echo.py"
    assert spec["secrets"] == {"API_TOKEN": "[secret]", "SERVICE_URL": "[secret]"}
    # The same with the token as a bearer header.
    bearer = {**json_headers, "Authorization": f"Bearer {endpoint.rsplit('/', 1)[1]}"}
    assert post(f"{base}/decode", body, bearer)[0] == 200
    # Without the token, or with a wrong one: refused, nothing decoded.
    for url in (f"{base}/decode", f"{base}/wrong-token/decode"):
        code, _, data = post(url, body, json_headers)
        assert code == 401 and b"env_echo" not in data
    # Another origin gets no CORS grant, in the preflight or the request itself.
    evil = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    code, headers, _ = post(f"{endpoint}/decode", b"", evil, method="OPTIONS")
    assert code == 403 and "Access-Control-Allow-Origin" not in headers
    code, headers, _ = post(f"{endpoint}/decode", b"", {**evil, "Origin": ui}, method="OPTIONS")
    assert code == 200 and headers["Access-Control-Allow-Origin"] == ui
    code, _, data = post(f"{endpoint}/decode", body, {**json_headers, "Origin": "http://x.y"})
    assert code == 403 and b"env_echo" not in data


def test_a_script_failure_leads_with_the_exit_code_and_last_stderr_line(
    cli: Cli, work: Path
) -> None:
    (work / "fail.py").write_text(
        "import sys\nprint('working', file=sys.stderr)\n"
        "print('disk full at row 7', file=sys.stderr)\nsys.exit(3)\n"
    )
    result = cli("run", "fail.py", "--json", cwd=work)
    assert result.code == 3
    run = result.json()
    assert isinstance(run, dict)
    assert run["error"] == "script exited with code 3: disk full at row 7"
    shown = json.loads(temporal(cli, "workflow", "show", "-w", run["id"], "-o", "json"))
    failed = shown["events"][-1]["workflowExecutionFailedEventAttributes"]["failure"]
    assert failed["message"] == "script exited with code 3: disk full at row 7"
    assert not failed.get("stackTrace") and "cause" not in failed
    assert failed["applicationFailureInfo"]["type"] == "ScriptFailed"


def listed(cli: Cli, query: str) -> list[dict[str, Any]]:
    out = temporal(cli, "workflow", "list", "--query", query, "-o", "json")
    return json.loads(out) if out.strip() else []


def test_project_filters_find_a_batchs_children_and_an_externally_started_run(
    cli: Cli, work: Path
) -> None:
    project = f"geo-{secrets.token_hex(4)}"
    for name in ("a", "b"):
        (work / f"{name}.txt").write_text(name)
    (work / "job.py").write_text("import sys\nsys.exit(1 if 'b' in sys.argv[-1] else 0)\n")
    result = cli(
        "run", "job.py", "--batch", "*.txt", "--project", project, "-m", "team=x", cwd=work
    )
    assert result.code == 1, result.stderr
    found = listed(cli, f'RgridProject = "{project}"')
    types = sorted(w["type"]["name"] for w in found)
    assert types == ["BatchWorkflow", "ExecutionWorkflow", "ExecutionWorkflow"]
    failed = listed(cli, f'RgridProject = "{project}" AND ExecutionStatus = "Failed"')
    assert [w["type"]["name"] for w in failed] == ["ExecutionWorkflow"]
    assert listed(cli, f'RgridProject = "{project}" AND RgridTags = "team=x"')
    assert len(listed(cli, f'RgridProject = "{project}" AND RgridNode IS NOT NULL')) == 2
    # rgrid's own listing filters the same way.
    rows = cli("list", "--project", project, "--json").json()
    assert isinstance(rows, list) and len(rows) == 2

    # A run started by another service through the raw contract alone carries them too.
    external = f"ext-{secrets.token_hex(4)}"
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "raw_contract.py"),
            "--address",
            f"127.0.0.1:{cli.env['RGRID_DEV_PORT']}",
            "--storage",
            str(cli.home / "storage"),
            "--keys",
            str(cli.home / "codec.keys"),
            "--project",
            external,
            str(EXAMPLES / "hello.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in cli.env.items() if k != "RGRID_CODEC_KEY"},
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["phase"] == "succeeded" and status["project"] == external
    [run] = listed(cli, f'RgridProject = "{external}"')
    assert run["execution"]["workflowId"] == status["execution_id"]
    assert listed(cli, f'RgridProject = "{external}" AND RgridScript = "hello.py"')


def test_the_rgrid_api_example_completes_a_run(cli: Cli, work: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "api_run.py"),
            str(EXAMPLES / "wordcount.py"),
            str(EXAMPLES / "data" / "doc.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=work,
        env={**cli.env, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["phase"] == "succeeded" and result["exit_code"] == 0
    assert result["outputs"] and all(Path(work, p).exists() for p in result["outputs"])
