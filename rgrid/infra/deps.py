"""What a script needs installed, and which of its sibling modules ship with it.

Python detection order: PEP 723 inline metadata, then a requirements.txt beside the script,
then pyproject.toml's [project].dependencies, then a scan of its imports (minus the standard
library and its own sibling modules) mapped to distribution names. Node scripts read a
package.json beside them. Siblings are found by the import scan whatever the source.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from rgrid.errors import UserInputError
from rgrid.images import NODE_SUFFIXES

# The reference regex of PEP 723, verbatim.
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")

# pip's rule: a comment starts at a '#' at the line start or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")

# Import names whose distribution is called something else; dotted keys match the longest
# prefix, so `google.protobuf.json_format` finds protobuf.
IMPORT_TO_DISTRIBUTION: dict[str, str] = {
    "attr": "attrs",
    "Bio": "biopython",
    "bs4": "beautifulsoup4",
    "Crypto": "pycryptodome",
    "Cryptodome": "pycryptodomex",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "dns": "dnspython",
    "docx": "python-docx",
    "dotenv": "python-dotenv",
    "faiss": "faiss-cpu",
    "fitz": "pymupdf",
    "git": "gitpython",
    "github": "pygithub",
    "google.auth": "google-auth",
    "google.cloud.bigquery": "google-cloud-bigquery",
    "google.cloud.storage": "google-cloud-storage",
    "google.protobuf": "protobuf",
    "googleapiclient": "google-api-python-client",
    "grpc": "grpcio",
    "jose": "python-jose",
    "jwt": "pyjwt",
    "magic": "python-magic",
    "mpl_toolkits": "matplotlib",
    "multipart": "python-multipart",
    "MySQLdb": "mysqlclient",
    "nacl": "pynacl",
    "OpenSSL": "pyopenssl",
    "PIL": "pillow",
    "pkg_resources": "setuptools",
    "pptx": "python-pptx",
    "ruamel": "ruamel.yaml",
    "serial": "pyserial",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "slugify": "python-slugify",
    "socks": "pysocks",
    "usb": "pyusb",
    "websocket": "websocket-client",
    "yaml": "pyyaml",
    "zmq": "pyzmq",
}

_REQUIREMENTS_HINT = (
    "list plain requirements, one a line; nodes install only from their own package index"
)


class DependencySpec(BaseModel):
    """What detection found for one script."""

    source: Literal["pep723", "requirements", "pyproject", "imports", "package.json", "none"]
    requirements: list[str]  # sorted, de-duplicated
    requires_python: str | None = None
    siblings: list[str] = []  # POSIX paths relative to the script's dir, shipped with it
    language: Literal["python", "node"]


def detect_dependencies(script: Path) -> DependencySpec:
    """Requirements and sibling modules of a script, by the documented detection order."""
    if not script.is_file():
        raise UserInputError(f"{script} is not a file", "check the script path")
    if script.suffix in NODE_SUFFIXES:
        return _node(script)
    # Parse first: a script that does not parse is refused whatever declares its needs.
    external, shipped = _scan(script)
    siblings = sorted(path.relative_to(script.parent).as_posix() for path in shipped)
    inline = _pep723(script)
    if inline is not None:
        return DependencySpec(
            source="pep723",
            requirements=_strings(inline.get("dependencies", []), script, "dependencies"),
            requires_python=_optional_string(inline.get("requires-python"), script),
            siblings=siblings,
            language="python",
        )
    requirements_txt = script.parent / "requirements.txt"
    if requirements_txt.is_file():
        return DependencySpec(
            source="requirements",
            requirements=_requirements_txt(requirements_txt),
            siblings=siblings,
            language="python",
        )
    project = _pyproject_project(script.parent / "pyproject.toml")
    if "dependencies" in project:
        pyproject = script.parent / "pyproject.toml"
        return DependencySpec(
            source="pyproject",
            requirements=_strings(project["dependencies"], pyproject, "[project].dependencies"),
            requires_python=_optional_string(project.get("requires-python"), pyproject),
            siblings=siblings,
            language="python",
        )
    imported = sorted({_distribution(name) for name in external})
    return DependencySpec(
        source="imports" if imported else "none",
        requirements=imported,
        siblings=siblings,
        language="python",
    )


def layer_key(requirements: list[str], base: str) -> str:
    """The sha256 hex naming the environment `requirements` installed on `base` would build."""
    # Byte-identical to the keys the process and docker runtimes already use, so switching
    # them to this function keeps every venv and image layer already cached on nodes.
    payload = json.dumps([base, sorted(requirements)])
    return hashlib.sha256(payload.encode()).hexdigest()


def _pep723(script: Path) -> dict[str, Any] | None:
    source = script.read_text(encoding="utf-8", errors="replace")
    blocks = [m for m in _PEP723.finditer(source) if m.group("type") == "script"]
    if len(blocks) > 1:
        raise UserInputError(f"{script} has more than one `# /// script` block", "keep one")
    if not blocks:
        return None
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        line = source[: blocks[0].start()].count("\n") + 1
        raise UserInputError(
            f"{script}:{line}: the `# /// script` block is not valid TOML ({exc})",
            "fix the block (PEP 723)",
        ) from exc


def _requirements_txt(path: Path) -> list[str]:
    found: list[str] = []
    logical, start = "", 0
    # utf-8-sig: editors on Windows write a byte-order mark pip also tolerates.
    for number, raw in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not logical:
            start = number
        if raw.endswith("\\"):  # pip joins continued lines before reading them
            logical += raw[:-1] + " "
            continue
        line = _COMMENT.sub("", logical + raw).strip()
        logical = ""
        if not line:
            continue
        tokens = line.split()
        # `-r other.txt` as a whole line, or per-requirement ones such as `--hash=...`.
        option = (
            tokens[0]
            if line.startswith("-")
            else next((token for token in tokens if token.startswith("--")), None)
        )
        if option is not None:
            # An option could point a node at another index or file; only names ship.
            raise UserInputError(
                f"{path}:{start}: {option!r} is not supported in requirements.txt",
                _REQUIREMENTS_HINT,
            )
        found.append(line)
    return sorted(set(found))


def _pyproject_project(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{path} is not valid TOML ({exc})", "fix or remove it") from exc
    return project if isinstance(project, dict) else {}


def _strings(value: object, origin: Path, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserInputError(
            f"{origin}: {what} must be a list of strings", "write requirements as strings"
        )
    return sorted({item.strip() for item in value if item.strip()})


def _optional_string(value: object, origin: Path) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UserInputError(f"{origin}: requires-python must be a string", 'e.g. ">=3.11"')
    return value if isinstance(value, str) else None


def _scan(script: Path) -> tuple[set[str], list[Path]]:
    """Third-party dotted import names and sibling files, following siblings (cycle-safe)."""
    directory = script.parent
    pending, seen = [script], {script}
    external: set[str] = set()
    shipped: list[Path] = []
    while pending:
        for name in _imports(pending.pop()):
            top = name.split(".")[0]
            local = _sibling_files(directory, top)
            for path in local:
                if path not in seen:  # `seen` is what makes import cycles terminate
                    seen.add(path)
                    shipped.append(path)
                    if path.suffix == ".py":
                        pending.append(path)
            if not local and top not in sys.stdlib_module_names and top != "__main__":
                external.add(name)
    return external, shipped


def _imports(path: Path) -> set[str]:
    """Absolute dotted names a module imports anywhere, including in functions and try blocks."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)  # null bytes carry no line
        raise UserInputError(
            f"{where}: syntax error: {exc.msg}", "fix it before running the script"
        ) from exc
    except ValueError as exc:  # some 3.11 releases report null bytes this way
        raise UserInputError(f"{path}: not Python source ({exc})", "check the file") from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from google import protobuf` names a module the table may know.
            names.update(
                node.module if alias.name == "*" else f"{node.module}.{alias.name}"
                for alias in node.names
            )
    return names


def _sibling_files(directory: Path, name: str) -> list[Path]:
    """The files of module `name` if it is the script's own: `name.py` or package `name/`."""
    single = directory / f"{name}.py"
    if single.is_file():
        return [single]
    package = directory / name
    if not (package / "__init__.py").is_file():
        return []
    # The whole package ships: it may load its own data files or submodules dynamically.
    files: list[Path] = []
    for root, dirs, names in os.walk(package):  # does not follow directory links
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        files.extend(Path(root) / n for n in names if not n.endswith((".pyc", ".pyo")))
    return sorted(files)


def _distribution(name: str) -> str:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        mapped = IMPORT_TO_DISTRIBUTION.get(".".join(parts[:end]))
        if mapped is not None:
            return mapped
    return parts[0]


# npm's package name rules, and semver ranges or dist-tags (`^1.2`, `>=2 <3 || 4.x`, `latest`).
_NPM_NAME = re.compile(r"(@[a-z0-9~-][a-z0-9._~-]*/)?[a-z0-9~-][a-z0-9._~-]*")
_NPM_RANGE = re.compile(r"[A-Za-z0-9 .^~<>=|*+-]*")


def _node(script: Path) -> DependencySpec:
    package_json = script.parent / "package.json"
    if not package_json.is_file():
        return DependencySpec(source="none", requirements=[], language="node")
    try:
        data = json.loads(package_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{package_json} is not valid JSON ({exc})", "fix it") from exc
    deps = data.get("dependencies") if isinstance(data, dict) else None
    deps = deps or {}
    if not isinstance(deps, dict) or not all(isinstance(v, str) for v in deps.values()):
        raise UserInputError(
            f"{package_json}: dependencies must map names to version ranges",
            'e.g. {"lodash": "^4.17.0"}',
        )
    for name, spec in deps.items():
        # Registry packages by version range only: a path, URL or git spec would make the
        # node install from somewhere other than its own registry.
        if not _NPM_NAME.fullmatch(name) or not _NPM_RANGE.fullmatch(spec):
            raise UserInputError(
                f"{package_json}: dependency {name!r}: {spec!r} is not a registry version range",
                'use registry packages with version ranges, e.g. "lodash": "^4.17.0"',
            )
    return DependencySpec(
        source="package.json",
        requirements=sorted(f"{name}@{spec or 'latest'}" for name, spec in deps.items()),
        language="node",
    )
