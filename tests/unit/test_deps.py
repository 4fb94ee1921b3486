from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from rgrid.errors import UserInputError
from rgrid.infra.deps import detect_dependencies, layer_key


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_pep723_metadata_wins_over_requirements_txt(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "job.py",
        """\
        # /// script
        # requires-python = ">=3.11"
        # dependencies = [
        #   "rich",
        #   "requests<3",
        # ]
        # ///
        import yaml
        """,
    )
    write(tmp_path, "requirements.txt", "numpy\n")
    found = detect_dependencies(script)
    assert (found.source, found.requirements) == ("pep723", ["requests<3", "rich"])
    assert (found.requires_python, found.language) == (">=3.11", "python")


def test_requirements_txt_skips_comments_blank_lines_and_inline_comments(
    tmp_path: Path,
) -> None:
    script = write(tmp_path, "job.py", "import numpy\n")
    write(
        tmp_path,
        "requirements.txt",
        "# data stack\nnumpy==2.1  # pinned\n\npandas\t# tab before the hash\npandas\n",
    )
    found = detect_dependencies(script)
    assert (found.source, found.requirements) == ("requirements", ["numpy==2.1", "pandas"])


def test_requirements_txt_index_url_is_refused_naming_the_line(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import numpy\n")
    write(tmp_path, "requirements.txt", "numpy\n--index-url https://elsewhere/simple\n")
    with pytest.raises(UserInputError, match=r"requirements\.txt:2: '--index-url'"):
        detect_dependencies(script)


def test_pyproject_project_dependencies_are_used(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import yaml\n")
    write(
        tmp_path,
        "pyproject.toml",
        '[project]\nname = "x"\nrequires-python = ">=3.12"\ndependencies = ["httpx>=0.27"]\n',
    )
    found = detect_dependencies(script)
    assert (found.source, found.requirements) == ("pyproject", ["httpx>=0.27"])
    assert found.requires_python == ">=3.12"


def test_import_scan_maps_yaml_to_pyyaml_and_drops_stdlib_and_siblings(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "job.py",
        """\
        import os, json
        import yaml
        from PIL import Image
        from sklearn.linear_model import LinearRegression
        import helpers
        """,
    )
    write(tmp_path, "helpers.py", "import collections\n")
    found = detect_dependencies(script)
    assert found.source == "imports"
    assert found.requirements == ["pillow", "pyyaml", "scikit-learn"]
    assert found.siblings == ["helpers.py"]


def test_imports_inside_functions_and_try_blocks_are_found(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "job.py",
        """\
        try:
            import ujson as json
        except ImportError:
            import json

        def fetch():
            from google.protobuf import json_format
            import requests
        """,
    )
    assert detect_dependencies(script).requirements == ["protobuf", "requests", "ujson"]


def test_sibling_package_dir_ships_whole_and_its_imports_are_scanned(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "from tools import parse\n")
    write(tmp_path, "tools/__init__.py", "")
    write(tmp_path, "tools/parse.py", "import dateutil.parser\nimport helpers\n")
    write(tmp_path, "tools/data/table.csv", "a,b\n")
    write(tmp_path, "helpers.py", "import bs4\n")
    write(tmp_path, "notes/readme.py", "import torch\n")  # no __init__.py: not a package
    found = detect_dependencies(script)
    assert found.requirements == ["beautifulsoup4", "python-dateutil"]
    assert found.siblings == [
        "helpers.py",
        "tools/__init__.py",
        "tools/data/table.csv",
        "tools/parse.py",
    ]


def test_import_cycle_between_siblings_terminates(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import a\n")
    write(tmp_path, "a.py", "import b\nimport job\n")
    write(tmp_path, "b.py", "import a\nimport attr\n")
    found = detect_dependencies(script)
    assert (found.requirements, found.siblings) == (["attrs"], ["a.py", "b.py"])


def test_siblings_ship_when_requirements_txt_declares_the_dependencies(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "import helpers\n")
    write(tmp_path, "helpers.py", "import numpy\n")
    write(tmp_path, "requirements.txt", "numpy<3\n")
    found = detect_dependencies(script)
    assert (found.source, found.requirements, found.siblings) == (
        "requirements",
        ["numpy<3"],
        ["helpers.py"],
    )


def test_relative_imports_are_ignored(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "from . import yaml\nfrom .requests import get\n")
    found = detect_dependencies(script)
    assert (found.source, found.requirements, found.siblings) == ("none", [], [])


def test_syntax_error_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    script = write(tmp_path, "job.py", "x = 1\ndef broken(:\n")
    with pytest.raises(UserInputError, match=r"job\.py:2: syntax error"):
        detect_dependencies(script)


def test_stdlib_only_script_has_source_none(tmp_path: Path) -> None:
    found = detect_dependencies(write(tmp_path, "job.py", "import sys\nprint(sys.argv)\n"))
    assert (found.source, found.requirements, found.siblings) == ("none", [], [])


def test_node_script_reads_package_json_dependencies(tmp_path: Path) -> None:
    script = write(tmp_path, "job.mjs", "console.log(1)\n")
    write(
        tmp_path,
        "package.json",
        '{"dependencies": {"lodash": "^4.17.0", "@scope/tool": "1.2.3"},'
        ' "devDependencies": {"jest": "^29"}}',
    )
    found = detect_dependencies(script)
    assert (found.source, found.language) == ("package.json", "node")
    assert found.requirements == ["@scope/tool@1.2.3", "lodash@^4.17.0"]


def test_node_script_without_package_json_has_source_none(tmp_path: Path) -> None:
    found = detect_dependencies(write(tmp_path, "job.js", "require('fs')\n"))
    assert (found.source, found.requirements, found.language) == ("none", [], "node")


def test_layer_key_changes_with_any_requirement_or_base_and_ignores_order() -> None:
    key = layer_key(["numpy==2.1", "pandas"], "python:3.12-slim")
    assert key == layer_key(["pandas", "numpy==2.1"], "python:3.12-slim")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key != layer_key(["numpy==2.2", "pandas"], "python:3.12-slim")
    assert key != layer_key(["numpy==2.1"], "python:3.12-slim")
    assert key != layer_key(["numpy==2.1", "pandas", "rich"], "python:3.12-slim")
    assert key != layer_key(["numpy==2.1", "pandas"], "python:3.13-slim")


@pytest.mark.parametrize(
    "spec",
    ["file:../evil", "git+https://example.invalid/x.git", "https://example.invalid/x.tgz", "a/b"],
)
def test_node_dependencies_must_be_registry_version_ranges(tmp_path: Path, spec: str) -> None:
    script = write(tmp_path, "job.js", "require('x')\n")
    write(tmp_path, "package.json", json.dumps({"dependencies": {"x": spec}}))
    with pytest.raises(UserInputError, match="not a registry version range"):
        detect_dependencies(script)


def test_node_dependency_ranges_and_tags_are_accepted(tmp_path: Path) -> None:
    script = write(tmp_path, "job.js", "require('x')\n")
    deps = {"a": ">=1.2 <2 || 3.x", "b": "latest", "c": "", "d": "~0.1.0-beta.2"}
    write(tmp_path, "package.json", json.dumps({"dependencies": deps}))
    found = detect_dependencies(script)
    assert found.requirements == ["a@>=1.2 <2 || 3.x", "b@latest", "c@latest", "d@~0.1.0-beta.2"]
