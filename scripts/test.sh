#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine, then runs lint, types and tests.
# This is the test command in README.md; CI runs it through .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# Real parts the tests use, from Debian: dockerd, and mmdebstrap to build base images from
# Debian packages (no container registry is reachable); PostgreSQL's server binaries for the
# throwaway ledger cluster; cloud-init's own schema checker for the nodes' user data;
# Chromium and its driver for the tests that drive the Temporal Web UI and the console.
# Without them those tests skip, saying why; in CI (CI=true) a part that cannot be installed
# or started stops the run here, and tests/allowed_skips.toml lists the only skips CI accepts.
fail_in_ci() {
  if [ "${CI:-}" = true ]; then echo "test.sh: $1" >&2; exit 1; fi
  echo "test.sh: $1 (the tests that need it will skip)" >&2
}
missing_parts() {
  local missing=""
  command -v dockerd >/dev/null || missing="$missing docker.io"
  command -v mmdebstrap >/dev/null || missing="$missing mmdebstrap"
  [ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$missing postgresql-15"
  command -v cloud-init >/dev/null || missing="$missing cloud-init"
  command -v systemd-analyze >/dev/null || missing="$missing systemd"
  command -v bwrap >/dev/null || missing="$missing bubblewrap"
  command -v chromium >/dev/null || missing="$missing chromium"
  command -v chromedriver >/dev/null || missing="$missing chromium-driver"
  echo "$missing"
}
# Two runs at once on one machine: one installs and starts dockerd while the other waits
# for it (apt's own lock would fail the second), then finds it done.
exec 9>/tmp/rgrid-test-setup.lock
flock 9
missing=$(missing_parts)
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  wait_lock=(-o DPkg::Lock::Timeout=600)  # another apt (not ours) may hold dpkg's lock
  { apt-get "${wait_lock[@]}" update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get "${wait_lock[@]}" install -y -qq $missing >/dev/null; } || true
fi
missing=$(missing_parts)
[ -z "$missing" ] || fail_in_ci "could not install:$missing"
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  (dockerd >/tmp/rgrid-test-dockerd.log 2>&1 &)
  for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || fail_in_ci "dockerd did not start (see /tmp/rgrid-test-dockerd.log)"
fi
flock -u 9
# Tests start their own services in private directories: never the user's own stack.
unset RGRID_HOME RGRID_TEMPORAL_ADDRESS RGRID_DATABASE_URL RGRID_STORAGE_URL RGRID_PROFILE \
  RGRID_CONFIG
.venv/bin/ruff check rgrid tests bench
.venv/bin/ruff format --check rgrid tests bench
.venv/bin/mypy rgrid
.venv/bin/pytest "$@"
