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
.venv/bin/uv pip install --quiet --python .venv/bin/python -e "$target"
