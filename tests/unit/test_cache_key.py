"""The result cache key: every part the outputs depend on changes it; nothing else does.

Each case builds a run from real files the way `rgrid run` does (gather, hash, spec), then
changes one thing and checks whether the key moved."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from rgrid.cache import key as cache_key_module
from rgrid.cache.key import has_no_cache_marker, spec_key
from rgrid.client import submit
from rgrid.config import Settings
from rgrid.infra.runtime.base import RunRequest
from rgrid.infra.runtime.docker import DockerRuntime


def key_of(settings: Settings, request: submit.RunRequest, cwd: Path) -> str | None:
    return asyncio.run(submit.dry_run(settings, request, cwd)).cache_key


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # file arguments are relative to where rgrid runs
    (tmp_path / "job.py").write_text("import helper\nprint(helper.VALUE)\n")
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    return tmp_path


def base_request(project: Path) -> submit.RunRequest:
    return submit.RunRequest(
        script=project / "job.py", args=["data.csv", "--mode", "fast"], env={"LEVEL": "1"}
    )


Change = Callable[[Path, submit.RunRequest, Settings], None]


def edit(name: str, text: str) -> Change:
    return lambda project, request, settings: (project / name).write_text(text) and None


def set_request(**fields: object) -> Change:
    def change(project: Path, request: submit.RunRequest, settings: Settings) -> None:
        for name, value in fields.items():
            setattr(request, name, value)

    return change


def rename_input(project: Path, request: submit.RunRequest, settings: Settings) -> None:
    (project / "data.csv").rename(project / "other.csv")
    request.args = ["other.csv", "--mode", "fast"]


def add_requirement(project: Path, request: submit.RunRequest, settings: Settings) -> None:
    (project / "requirements.txt").write_text("six\n")


def default_image(project: Path, request: submit.RunRequest, settings: Settings) -> None:
    settings.python_image = "example/python:other"


MISSES: dict[str, Change] = {
    "script content": edit("job.py", "import helper\nprint(helper.VALUE, 2)\n"),
    "sibling module": edit("helper.py", "VALUE = 2\n"),
    "input content": edit("data.csv", "a,b\n1,3\n"),
    "input name": rename_input,
    "args": set_request(args=["data.csv", "--mode", "slow"]),
    "env": set_request(env={"LEVEL": "2"}),
    "runtime": set_request(runtime="process"),
    "image": set_request(image="example/python:3.12"),
    "default image": default_image,
    "dependencies": add_requirement,
    "network": set_request(network=False),
}


@pytest.mark.parametrize("part", sorted(MISSES))
def test_changing_one_part_changes_the_key(
    part: str, project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    before = key_of(settings, base_request(project), project)
    request = base_request(project)
    MISSES[part](project, request, settings)
    after = key_of(settings, request, project)
    assert before is not None and after is not None
    assert after != before


HITS: dict[str, Change] = {
    "tags": set_request(tags={"team": "x"}),
    "timeout": set_request(timeout_s=5),
    "retries": set_request(retries=3),
}


@pytest.mark.parametrize("part", sorted(HITS))
def test_what_cannot_change_outputs_keeps_the_key(
    part: str, project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    first = base_request(project)
    first.env = {"LEVEL": "1", "API_TOKEN": "original"}
    before = key_of(settings, first, project)
    request = base_request(project)
    request.env = {"LEVEL": "1", "API_TOKEN": "original"}
    HITS[part](project, request, settings)
    assert key_of(settings, request, project) == before


def test_a_changed_secret_value_changes_the_key_and_the_same_one_keeps_it(
    project: Path, tmp_path: Path
) -> None:
    # Secrets count through a keyed hash of their values (the key shows none of them).
    settings = Settings(home=tmp_path)

    def with_token(value: str) -> str | None:
        request = base_request(project)
        request.env = {"LEVEL": "1", "API_TOKEN": value}
        return key_of(settings, request, project)

    assert with_token("original") == with_token("original")
    assert with_token("original") != with_token("rotated")


def test_the_schema_version_is_part_of_the_key(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    before = key_of(settings, base_request(project), project)
    monkeypatch.setattr(cache_key_module, "CACHE_SCHEMA", cache_key_module.CACHE_SCHEMA + 1)
    assert key_of(settings, base_request(project), project) != before


def test_dry_run_shows_the_parts_without_secret_values(project: Path, tmp_path: Path) -> None:
    request = base_request(project)
    request.env = {"LEVEL": "1", "DB_PASSWORD": "hunter2"}
    plan = asyncio.run(submit.dry_run(Settings(home=tmp_path / "home"), request, project))
    assert plan.cache_parts["env"] == {"LEVEL": "1"}
    assert "hunter2" not in repr(plan.cache_parts)
    assert ["helper.py"] == [name for name, _ in plan.cache_parts["files"] if name.endswith(".py")]


@pytest.mark.parametrize(
    ("text", "marked"),
    [
        ("# rgrid: no-cache\nprint(1)\n", True),
        ("print(1)\n    #  rgrid:  no-cache  \n", True),
        ("// rgrid: no-cache\nconsole.log(1)\n", True),
        ("print('# rgrid: no-cache')\n", False),
        ("# rgrid: no-cache please\n", False),
    ],
)
def test_the_no_cache_marker_must_stand_on_its_own_line(text: str, marked: bool) -> None:
    assert has_no_cache_marker(textwrap.dedent(text)) is marked


def test_a_marked_script_has_no_key(project: Path, tmp_path: Path) -> None:
    (project / "job.py").write_text("# rgrid: no-cache\nprint('sends an email')\n")
    assert key_of(Settings(home=tmp_path / "home"), base_request(project), project) is None


def test_the_node_runs_the_image_the_key_names(project: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", python_image="example/python:client")
    plan = asyncio.run(submit.dry_run(settings, base_request(project), project))
    assert plan.cache_parts["image"] == "example/python:client"
    node = DockerRuntime("example/python:node-own", "example/node:node-own")
    run = RunRequest(execution_id="e", work_dir=tmp_path, tmp_dir=tmp_path, script="job.py")
    with_spec_image = run.model_copy(update={"default_image": "example/python:client"})
    assert node.base_image(with_spec_image) == "example/python:client"
    assert node.base_image(run) == "example/python:node-own"  # a spec from before the field


def test_a_spec_from_before_the_default_image_keys_like_a_new_run(
    project: Path, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "home")
    script, args, files, deps = submit.gather(base_request(project), project)
    refs = asyncio.run(submit.hash_files(files))
    new = submit.build_spec(settings, base_request(project), script, args, refs, deps)
    old = new.model_copy(update={"default_image": None})  # as an older client wrote it
    assert spec_key(old) != spec_key(new)
    assert spec_key(submit.with_default_image(settings, old)) == spec_key(new)
