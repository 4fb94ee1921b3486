#!/usr/bin/env bash
# Creates .venv with rgrid installed (editable), using uv for speed.
#   bash scripts/bootstrap.sh          # rgrid only
#   bash scripts/bootstrap.sh test     # rgrid and everything the tests need
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
# Bytecode is compiled here, once: with PYTHONDONTWRITEBYTECODE=1 (as on these machines)
# Python never caches it itself, and every command would compile its imports again
# (seconds: SQLAlchemy, temporalio and pydantic are large).
.venv/bin/uv pip install --quiet --python .venv/bin/python -e "$target"
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
.venv/bin/python -m compileall -q -j 0 "$site" rgrid >/dev/null || true
