"""What a script needs installed, and which of its sibling modules ship with it.

Detection order for Python: PEP 723 inline metadata, then a requirements.txt beside the
script, then pyproject.toml's [project].dependencies, then a scan of its imports (minus the
standard library and its own sibling modules), mapped to distribution names.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from rgrid.errors import UserInputError

# The reference regex of PEP 723.
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

# Import names whose distribution is called something else.
IMPORT_TO_DISTRIBUTION = {
    "attr": "attrs",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "Crypto": "pycryptodome",
    "dateutil": "python-dateutil",
    "docx": "python-docx",
    "dotenv": "python-dotenv",
    "fitz": "pymupdf",
    "google.protobuf": "protobuf",
    "jwt": "pyjwt",
    "magic": "python-magic",
    "OpenSSL": "pyopenssl",
    "PIL": "pillow",
    "pptx": "python-pptx",
    "serial": "pyserial",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "usb": "pyusb",
    "yaml": "pyyaml",
}


class DependencySpec(BaseModel):
    """What detection found for one script."""

    language: Literal["python", "node"]
    source: Literal["pep723", "requirements", "pyproject", "imports", "package.json", "none"]
    requirements: list[str] = Field(default_factory=list)
    requires_python: str | None = None
    siblings: list[str] = Field(default_factory=list)  # files beside the script to ship


def detect_dependencies(script: Path) -> DependencySpec:
    """Requirements and sibling files of a script, by the documented order."""
    if script.suffix in (".js", ".mjs", ".cjs"):
        return _node(script)
    source = script.read_text(encoding="utf-8", errors="replace")
    external, shipped = _walk(script)  # also rejects a script that does not parse
    siblings = sorted(p.relative_to(script.parent).as_posix() for p in shipped)
    inline = _pep723(script, source)
    if inline is not None:
        return DependencySpec(
            language="python",
            source="pep723",
            requirements=_clean(inline.get("dependencies", [])),
            requires_python=inline.get("requires-python"),
            siblings=siblings,
        )
    requirements_txt = script.parent / "requirements.txt"
    if requirements_txt.is_file():
        return DependencySpec(
            language="python",
            source="requirements",
            requirements=_read_requirements(requirements_txt),
            siblings=siblings,
        )
    pyproject = script.parent / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if "dependencies" in project:
            return DependencySpec(
                language="python",
                source="pyproject",
                requirements=_clean(project["dependencies"]),
                requires_python=project.get("requires-python"),
                siblings=siblings,
            )
    imported = _distributions(external)
    return DependencySpec(
        language="python",
        source="imports" if imported else "none",
        requirements=imported,
        siblings=siblings,
    )


def _pep723(script: Path, source: str) -> dict[str, object] | None:
    blocks = [m for m in _PEP723.finditer(source) if m.group("type") == "script"]
    if len(blocks) > 1:
        raise UserInputError(f"{script} has two `# /// script` blocks", "keep one (PEP 723)")
    if not blocks:
        return None
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(
            f"{script}: the `# /// script` block is not valid TOML", str(exc)
        ) from exc


def _read_requirements(path: Path) -> list[str]:
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            # A node installs from its own configured index only.
            raise UserInputError(
                f"{path}:{number}: option lines such as {line.split()[0]!r} are not supported",
                "list plain requirements; nodes use their own package index",
            )
        found.append(line)
    return _clean(found)


def _clean(requirements: object) -> list[str]:
    if not isinstance(requirements, list):
        return []
    return sorted({str(item).strip() for item in requirements if str(item).strip()})


def _local_module(directory: Path, name: str) -> list[Path]:
    """The files of a module `name` beside the script, if it is one of its own."""
    single = directory / f"{name}.py"
    if single.is_file():
        return [single]
    package = directory / name
    if (package / "__init__.py").is_file():
        return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return []


def _imports(path: Path) -> set[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise UserInputError(
            f"{path}:{exc.lineno}: syntax error: {exc.msg}", "fix the script before running it"
        ) from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _walk(script: Path) -> tuple[set[str], list[Path]]:
    """Third-party dotted import names and sibling files, following siblings (cycle-safe)."""
    directory = script.parent
    pending, seen = [script], {script}
    external: set[str] = set()
    shipped: list[Path] = []
    while pending:
        current = pending.pop()
        for name in _imports(current):
            top = name.split(".")[0]
            local = _local_module(directory, top)
            if local:
                for path in local:
                    if path not in seen:
                        seen.add(path)
                        shipped.append(path)
                        if path.suffix == ".py":
                            pending.append(path)
            elif top not in sys.stdlib_module_names and top != "__future__":
                external.add(name)
    return external, shipped


def _distributions(external: set[str]) -> list[str]:
    distributions = set()
    for name in external:
        top = name.split(".")[0]
        mapped = IMPORT_TO_DISTRIBUTION.get(name) or IMPORT_TO_DISTRIBUTION.get(top)
        distributions.add(mapped or top)
    return sorted(distributions)


def _node(script: Path) -> DependencySpec:
    package_json = script.parent / "package.json"
    if not package_json.is_file():
        return DependencySpec(language="node", source="none")
    try:
        data = json.loads(package_json.read_text())
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{package_json} is not valid JSON", str(exc)) from exc
    deps = data.get("dependencies") or {}
    return DependencySpec(
        language="node",
        source="package.json",
        requirements=sorted(f"{name}@{spec}" for name, spec in deps.items()),
    )
