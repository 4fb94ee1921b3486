"""End-to-end: the real `rgrid` CLI against a real embedded stack in a private RGRID_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.docker_images import PYTHON_IMAGE


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


@dataclass
class Cli:
    env: dict[str, str]
    home: Path

    def __call__(
        self, *args: str, cwd: Path | None = None, timeout: float = 120, **extra_env: str
    ) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "rgrid", *args],
            cwd=cwd,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "rgrid", *args],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def isolated_env(root: Path) -> dict[str, str]:
    """Environment of a user with a fresh HOME and rgrid on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RGRID_", "XDG_"))}
    env.update(
        HOME=str(root / "home"),
        RGRID_HOME=str(root / "rgrid"),
        XDG_CONFIG_HOME=str(root / "config"),
        RGRID_DEV_PORT=str(free_port()),
        RGRID_DEV_UI_PORT=str(free_port()),
        RGRID_CODEC_PORT=str(free_port()),
        RGRID_LOCAL_SLOTS="2",
        RGRID_RUNTIME="process",  # docker is asked for explicitly, with the image tests build
        RGRID_PYTHON_IMAGE=PYTHON_IMAGE,
    )
    return env


@pytest.fixture(scope="session")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    root = tmp_path_factory.mktemp("e2e")
    runner = Cli(env=isolated_env(root), home=root / "rgrid")
    started = runner("dev", "start", timeout=120)
    assert started.code == 0, started.stderr
    yield runner
    runner("dev", "stop", timeout=60)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A directory to run rgrid from, as a user's project dir."""
    return tmp_path
