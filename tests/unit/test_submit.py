from __future__ import annotations

from pathlib import Path

import pytest

from rgrid.client.file_args import looks_like_path, staged_name
from rgrid.client.submit import RunRequest, collect_files
from rgrid.errors import UserInputError


@pytest.mark.parametrize("arg", ["data/doc.txt", "x.csv", "./a", "../b.json", "/abs/path"])
def test_path_like_arguments(arg: str) -> None:
    assert looks_like_path(arg)


@pytest.mark.parametrize("arg", ["--verbose", "3.14", "10", "hello", "https://example.org/a.csv"])
def test_arguments_that_are_not_paths(arg: str) -> None:
    assert not looks_like_path(arg)


def test_files_under_cwd_keep_their_relative_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    assert staged_name(tmp_path / "data" / "a.txt", tmp_path) == "data/a.txt"
    assert staged_name(Path("/etc/hostname"), tmp_path) == "hostname"


def test_file_arguments_are_rewritten_to_their_staged_names(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("x")
    _, args, files = collect_files(
        RunRequest(script=script, args=["--n", "3", str(outside)]), tmp_path
    )
    assert args == ["--n", "3", outside.name]
    assert set(files) == {"job.py", outside.name}
    outside.unlink()


def test_two_files_with_the_same_staged_name_are_refused(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("")
    for sub in ("a", "b"):
        (tmp_path.parent / sub).mkdir(exist_ok=True)
        (tmp_path.parent / sub / "same.txt").write_text(sub)
    with pytest.raises(UserInputError, match=r"both be staged as 'same\.txt'"):
        collect_files(
            RunRequest(
                script=script,
                args=[
                    str(tmp_path.parent / "a" / "same.txt"),
                    str(tmp_path.parent / "b" / "same.txt"),
                ],
            ),
            tmp_path,
        )
