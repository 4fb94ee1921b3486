"""Just enough of systemd to start a shipped unit's service as a local process: what the
Hetzner stand-in does for a node's `rgrid-agent.service`, and the topology test for
`rgrid-control.service`. Paths are the one thing rewritten: the deployment's
`/opt/rgrid/venv/bin/rgrid` becomes this checkout's rgrid (the unit's command is otherwise
run as written, its `${VAR}`s expanded from the unit's environment as systemd does).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

SHIPPED_VENV = "/opt/rgrid/venv/bin/"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BARE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def service_section(*texts: str) -> dict[str, list[str]]:
    """The [Service] settings of a unit and its drop-ins, in order, every value of a key
    kept (Environment= and LoadCredential= may repeat; an empty value resets the list)."""
    values: dict[str, list[str]] = {}
    for text in texts:
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif section == "Service" and "=" in line:
                key, value = (part.strip() for part in line.split("=", 1))
                if value:
                    values.setdefault(key, []).append(value)
                else:
                    values.pop(key, None)
    return values


def environment_lines(values: list[str]) -> dict[str, str]:
    """`Environment=A=1 "B=two words"` lines as a mapping."""
    env = {}
    for line in values:
        for item in shlex.split(line):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def read_env_file(text: str) -> dict[str, str]:
    """An EnvironmentFile: `KEY=value` or `KEY="value"` (backslash escapes), # comments."""
    env = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        env[key.strip()] = value
    return env


def expand_command(line: str, env: dict[str, str]) -> list[str]:
    """ExecStart's argv with systemd's substitution: `${VAR}` inside a word, and a word
    that is only `$VAR` split at whitespace; an unset variable is empty."""
    argv: list[str] = []
    for word in shlex.split(line.lstrip("-+!:@")):
        bare = _BARE.fullmatch(word)
        if bare:
            argv.extend(env.get(bare.group(1), "").split())
        else:
            argv.append(_VAR.sub(lambda m: env.get(m.group(1), ""), word))
    return argv


def local_rgrid() -> list[str]:
    """This checkout's `rgrid`: the console script beside this interpreter, else -m."""
    script = Path(sys.executable).with_name("rgrid")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rgrid"]


def localized(argv: list[str]) -> list[str]:
    """The deployment's venv programs as this machine has them."""
    head = argv[0]
    if head == f"{SHIPPED_VENV}rgrid":
        return [*local_rgrid(), *argv[1:]]
    if Path(head).name.startswith("python"):
        return [sys.executable, *argv[1:]]
    return argv


def service_command(
    unit_texts: list[str],
    read: Callable[[str], str],
    base_env: dict[str, str],
    place: Callable[[str], str] = lambda value: value,
) -> tuple[list[str], dict[str, str]]:
    """The local argv and environment of a unit's service. `read` opens the paths the unit
    names (EnvironmentFile); `place` rewrites each environment value (a stand-in roots
    absolute paths in its server's directory). EnvironmentFile wins over Environment=."""
    service = service_section(*unit_texts)
    env = dict(base_env)
    for key, value in environment_lines(service.get("Environment", [])).items():
        env[key] = place(value)
    for path in service.get("EnvironmentFile", []):
        optional = path.startswith("-")
        try:
            text = read(path.lstrip("-"))
        except FileNotFoundError:
            if optional:
                continue
            raise
        for key, value in read_env_file(text).items():
            env[key] = place(value)
    (exec_start,) = service["ExecStart"][-1:]
    return localized(expand_command(exec_start, env)), env
