from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rgrid.errors import UserInputError
from rgrid.infra.deps import detect_dependencies


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_pep723_metadata_wins_over_requirements_txt(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "job.py",
        """
        # /// script
        # requires-python = ">=3.11"
        # dependencies = ["requests<3", "rich"]
        # ///
        import yaml
    """,
    )
    write(tmp_path, "requirements.txt", "numpy\n")
    found = detect_dependencies(script)
    assert (found.source, found.requirements) == ("pep723", ["requests<3", "rich"])
    assert found.requires_python == ">=3.11"


def test_requirements_txt_skips_comments_and_refuses_index_options(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import numpy\n")
    write(tmp_path, "requirements.txt", "# data\nnumpy==2.1  # pinned\n\npandas\n")
    found = detect_dependencies(script)
    assert (found.source, found.requirements) == ("requirements", ["numpy==2.1", "pandas"])
    write(tmp_path, "requirements.txt", "numpy\n--index-url https://elsewhere/simple\n")
    with pytest.raises(UserInputError, match=r"requirements.txt:2: option lines"):
        detect_dependencies(script)


def test_pyproject_dependencies(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "print(1)\n")
    write(tmp_path, "pyproject.toml", '[project]\nname = "x"\ndependencies = ["httpx"]\n')
    assert detect_dependencies(script).requirements == ["httpx"]


def test_import_scan_maps_names_and_drops_stdlib_and_siblings(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "job.py",
        """
        import os, json
        import yaml
        from PIL import Image
        from sklearn.linear_model import LinearRegression
        import helpers
        from . import relative_is_ignored
        def later():
            import requests
    """,
    )
    write(tmp_path, "helpers.py", "import bs4\nimport job\n")  # a cycle back to the script
    found = detect_dependencies(script)
    assert found.source == "imports"
    assert found.requirements == ["beautifulsoup4", "pillow", "pyyaml", "requests", "scikit-learn"]
    assert found.siblings == ["helpers.py"]  # the script itself is not shipped twice


def test_sibling_packages_ship_whole_and_are_scanned(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import tools.parse\n")
    write(tmp_path, "tools/__init__.py", "")
    write(tmp_path, "tools/parse.py", "import dateutil.parser\n")
    write(tmp_path, "tools/data/table.csv", "a,b\n")
    found = detect_dependencies(script)
    assert found.requirements == ["python-dateutil"]
    assert found.siblings == ["tools/__init__.py", "tools/data/table.csv", "tools/parse.py"]


def test_a_script_that_does_not_parse_is_named_with_its_line(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "x = 1\ndef broken(:\n")
    with pytest.raises(UserInputError, match=r"job.py:2: syntax error"):
        detect_dependencies(script)


def test_nothing_to_install_is_source_none(tmp_path: Path) -> None:
    found = detect_dependencies(write(tmp_path, "job.py", "import sys\nprint(sys.argv)\n"))
    assert (found.source, found.requirements, found.siblings) == ("none", [], [])


def test_node_scripts_read_package_json(tmp_path: Path) -> None:
    script = write(tmp_path, "job.js", "console.log(1)\n")
    assert detect_dependencies(script).source == "none"
    write(tmp_path, "package.json", '{"dependencies": {"lodash": "^4.17.0"}}')
    found = detect_dependencies(script)
    assert (found.language, found.requirements) == ("node", ["lodash@^4.17.0"])
