from __future__ import annotations

import os
from pathlib import Path

import pytest

from rgrid.config import describe_settings, hide_password, load_settings, node_environment

SECRET_URL = "postgresql+asyncpg://rgrid:s3cret-pw@db.internal:5432/rgrid"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("RGRID_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config.toml"
    path.write_text(
        "[profiles.team]\n"
        f'database_url = "{SECRET_URL}"\n'
        'temporal_address = "temporal.internal:7233"\n'
        'temporal_api_key = "key-that-must-not-show"\n'
        'storage_url = "s3://team-bucket/rgrid"\n'
    )
    monkeypatch.setenv("RGRID_CONFIG", str(path))
    monkeypatch.setenv("RGRID_PROFILE", "team")
    return path


def test_config_names_each_source_and_hides_secrets(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGRID_TIMEOUT_S", "90")
    described = {s.name: s for s in describe_settings(load_settings())}

    assert described["timeout_s"].value == "90"
    assert described["timeout_s"].source == "env RGRID_TIMEOUT_S"
    assert described["storage_url"].value == "s3://team-bucket/rgrid"
    assert described["storage_url"].source == f"profile team in {config_file}"
    assert described["memory_mb"].source == "default"
    assert described["database_url"].value == (
        "postgresql+asyncpg://rgrid:***@db.internal:5432/rgrid"
    )
    assert described["temporal_api_key"].value == "(set, hidden)"
    shown = repr([s.model_dump() for s in described.values()])
    assert "s3cret-pw" not in shown and "key-that-must-not-show" not in shown


def test_nodes_get_temporal_and_storage_but_never_the_database_url(config_file: Path) -> None:
    env = node_environment(load_settings())

    assert env["RGRID_TEMPORAL_ADDRESS"] == "temporal.internal:7233"
    assert env["RGRID_STORAGE_URL"] == "s3://team-bucket/rgrid"
    assert "s3cret-pw" not in repr(env) and "RGRID_DATABASE_URL" not in env
    # The agent reads no config file, so the profile cannot give it the URL either.
    assert env["RGRID_CONFIG"] == os.devnull and "RGRID_PROFILE" not in env


def test_a_node_environment_loads_into_the_same_settings_without_the_database(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = load_settings()
    for name in list(os.environ):
        if name.startswith("RGRID_"):
            monkeypatch.delenv(name)
    for name, value in node_environment(mine).items():
        monkeypatch.setenv(name, value)

    node = load_settings()

    assert node.database_url is None
    assert node.temporal_api_key == mine.temporal_api_key
    assert node.model_dump(exclude={"database_url"}) == mine.model_dump(
        exclude={"database_url", "profile"}
    ) | {"profile": "default"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SECRET_URL, "postgresql+asyncpg://rgrid:***@db.internal:5432/rgrid"),
        ("sqlite+aiosqlite:////home/u/ledger.db", "sqlite+aiosqlite:////home/u/ledger.db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_passwords_in_urls_are_hidden(url: str, shown: str) -> None:
    assert hide_password(url) == shown
