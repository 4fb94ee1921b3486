"""`rgrid run --batch` as a user types it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.e2e.test_errors import one_clear_line

pytestmark = pytest.mark.e2e

UPPER = """
import sys
source = sys.argv[-1]
text = open(source).read()
if "boom" in text:
    print("cannot shout at", source, file=sys.stderr)
    sys.exit(5)
open("upper.txt", "w").write(text.upper())
"""


def project(work: Path, files: dict[str, str]) -> None:
    (work / "upper.py").write_text(UPPER)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)


def test_outputs_land_per_input_and_failures_are_summarised(cli: Cli, work: Path) -> None:
    project(work, {"data/a.txt": "alpha", "data/b.txt": "boom", "data/sub/c.txt": "gamma"})
    result = cli("run", "upper.py", "--batch", "data/**/*.txt", "--parallel", "3", cwd=work)
    assert result.code == 1
    assert (work / "outputs" / "a" / "upper.txt").read_text() == "ALPHA"
    assert (work / "outputs" / "c" / "upper.txt").read_text() == "GAMMA"
    assert not (work / "outputs" / "b").exists()
    assert "2 ok · 1 failed" in result.stderr
    # Without a terminal, each item's end is told once, as it ends.
    ended = sorted(
        line.split()[:2]
        for line in result.stderr.splitlines()
        if line.startswith(("succeeded ", "failed "))
    )
    assert ended == [
        ["failed", "data/b.txt"],
        ["succeeded", "data/a.txt"],
        ["succeeded", "data/sub/c.txt"],
    ], result.stderr
    summary = result.stderr[result.stderr.index("1 failed\n") :]
    # The failures table: the input, its exit code and its last stderr line, on one row.
    row = next(line for line in summary.splitlines() if "data/b.txt" in line)
    cells = [cell.strip() for cell in re.split(r"[│┃|]|\s{2,}", row) if cell.strip()]
    assert cells[:2] == ["data/b.txt", "5"], row
    assert cells[2].startswith("cannot shout at"), row


def test_flat_prefixes_outputs_with_the_input_stem(cli: Cli, work: Path) -> None:
    project(work, {"in/x.txt": "x", "in/y.txt": "y"})
    result = cli("run", "upper.py", "--batch", "in/*.txt", "--flat", "--json", cwd=work)
    assert result.code == 0, result.stderr
    payload = result.json()
    assert (payload["succeeded"], payload["failed"], payload["total"]) == (2, 0, 2)
    assert sorted(p.name for p in (work / "outputs").iterdir()) == ["x_upper.txt", "y_upper.txt"]


def test_stem_collisions_use_the_full_name_and_unicode_is_kept(cli: Cli, work: Path) -> None:
    project(work, {"d/résumé.csv": "one", "d/résumé.txt": "two"})
    result = cli("run", "upper.py", "--batch", "d/*", cwd=work)
    assert result.code == 0, result.stderr
    assert (work / "outputs" / "résumé.csv" / "upper.txt").read_text() == "ONE"
    assert (work / "outputs" / "résumé.txt" / "upper.txt").read_text() == "TWO"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--batch", "nothing/*.csv"], "--batch 'nothing/*.csv' matches no files"),
        (["--batch", "data/*"], "matches a directory"),
        (["--batch", "data/*.txt", "--parallel", "0"], "--parallel 0 is not allowed"),
        (["--batch", "a/*.txt", "--batch", "b/*.txt"], "2 inputs are named 'same.txt'"),
    ],
)
def test_bad_batches_start_nothing(cli: Cli, work: Path, args: list[str], expected: str) -> None:
    project(
        work, {"data/one.txt": "1", "data/dir/two.txt": "2", "a/same.txt": "a", "b/same.txt": "b"}
    )
    before = cli("list", "--batches", "--json").json()
    result = cli("run", "upper.py", *args, cwd=work)
    assert result.code == 125
    assert expected in one_clear_line(result.stderr)
    assert cli("list", "--batches", "--json").json() == before


def test_batch_status_and_retry_of_failed_items(cli: Cli, work: Path) -> None:
    project(work, {"items/ok.txt": "fine", "items/bad.txt": "boom"})
    first = cli("run", "upper.py", "--batch", "items/*.txt", "--json", cwd=work)
    batch_id = first.json()["batch_id"]
    status = cli("status", batch_id, "--json").json()
    assert (status["succeeded"], status["failed"], status["done"]) == (1, 1, True)
    retried = cli("retry", batch_id, "--failed-only", "--json", cwd=work)
    assert retried.code == 1  # the same input fails the same way
    assert retried.json()["failed"] == 1
    assert [f["id"].endswith("-r1") for f in retried.json()["failures"]] == [True]
    nothing = cli("retry", batch_id, cwd=work)
    assert "--failed-only" in one_clear_line(nothing.stderr)
