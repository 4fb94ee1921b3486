#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs lint, types and tests.
# This is the test command in README.md; CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Real parts the docker tests use: dockerd, and mmdebstrap to build base images from Debian
# packages (no container registry is reachable). Without them those tests skip, saying why.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        docker.io mmdebstrap >/dev/null; } || echo "could not install docker.io/mmdebstrap"
  fi
fi
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/rgrid-test-dockerd.log 2>&1 &)
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
# PostgreSQL's server binaries, for the throwaway cluster the ledger tests start.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      postgresql-15 >/dev/null; } || echo "could not install postgresql-15"
fi
# Tests start their own services in private directories: never the user's own stack.
unset RGRID_HOME RGRID_TEMPORAL_ADDRESS RGRID_DATABASE_URL RGRID_STORAGE_URL RGRID_PROFILE \
  RGRID_CONFIG
.venv/bin/ruff check rgrid tests bench
.venv/bin/ruff format --check rgrid tests bench
.venv/bin/mypy rgrid
.venv/bin/pytest "$@"
