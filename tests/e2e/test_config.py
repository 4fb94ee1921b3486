"""`rgrid init` profiles: private files, and a profile really changes where rgrid goes."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, isolated_env
from tests.e2e.test_errors import SHORT_RIDE_OUT, _closed_port, one_clear_line, unreachable_line

pytestmark = pytest.mark.e2e


def test_init_writes_a_private_profile_that_selects_the_server(tmp_path: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    address = f"127.0.0.1:{_closed_port()}"
    written = cli("init", "--profile", "team", "--temporal-address", address)
    assert written.code == 0, written.stderr
    path = tmp_path / "config" / "rgrid" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tomllib.loads(path.read_text())["profiles"]["team"]["temporal_address"] == address

    (tmp_path / "ok.py").write_text("print('ok')\n")
    result = cli("--profile", "team", "run", "ok.py", cwd=tmp_path, **SHORT_RIDE_OUT)
    assert result.code == 75  # the profile's server was dialled, and did not answer
    assert f"Temporal at {address} does not answer" in unreachable_line(result.stderr)


def test_an_unknown_profile_is_one_line(tmp_path: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    cli("init")
    (tmp_path / "ok.py").write_text("print('ok')\n")
    result = cli("--profile", "nope", "run", "ok.py", cwd=tmp_path)
    assert result.code == 125
    assert "no profile named 'nope'" in one_clear_line(result.stderr)


def test_config_shows_where_settings_come_from_and_never_the_api_key(tmp_path: Path) -> None:
    cli = Cli(env=isolated_env(tmp_path), home=tmp_path / "rgrid")
    written = cli(
        "init", "--profile", "team", "--temporal-address", "t.internal:7233",
        "--api-key", "very-secret-key", "--tls-cert", "cert.pem",
        cwd=tmp_path,
    )  # fmt: skip
    assert written.code == 0, written.stderr

    shown = cli("--profile", "team", "config", "--json", RGRID_TIMEOUT_S="60")
    assert shown.code == 0, shown.stderr
    settings = shown.json()
    assert isinstance(settings, dict)
    path = tmp_path / "config" / "rgrid" / "config.toml"
    assert settings["temporal_address"] == {
        "value": "t.internal:7233",
        "source": f"profile team in {path}",
    }
    assert settings["temporal_tls_cert"]["value"] == str(tmp_path / "cert.pem")
    assert settings["temporal_api_key"]["value"] == "(set, hidden)"
    assert settings["timeout_s"] == {"value": "60", "source": "env RGRID_TIMEOUT_S"}
    assert settings["memory_mb"]["source"] == "default"
    table = cli("--profile", "team", "config")
    assert "very-secret-key" not in shown.stdout + table.stdout + table.stderr
