#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs lint, types and tests.
# This is the test command in README.md; CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Tests start their own services in private directories: never the user's own stack.
unset RGRID_HOME RGRID_TEMPORAL_ADDRESS RGRID_DATABASE_URL RGRID_STORAGE_URL RGRID_PROFILE
.venv/bin/ruff check rgrid tests bench
.venv/bin/ruff format --check rgrid tests bench
.venv/bin/mypy rgrid
.venv/bin/pytest "$@"
