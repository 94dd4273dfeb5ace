#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, start the local stack, lint, type-check, test.
#   scripts/test.sh                 everything (unit + integration)
#   scripts/test.sh tests/unit      any pytest arguments
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/bootstrap.sh
# The shipped systemd units and logrotate file are checked by the real tools (systemd-analyze
# verify/security, logrotate); those tests fail without them in CI.
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 || true
fi
scripts/stack.sh up
if [ "${CI:-}" = "true" ]; then
  trap 'scripts/stack.sh down || true' EXIT
fi
.venv/bin/ruff check orion_etl tests scripts
.venv/bin/ruff format --check orion_etl tests scripts
.venv/bin/mypy orion_etl
# The runbook's installation from a built wheel (throwaway virtualenv).
scripts/check_wheel.sh
# End to end first: the README's demo on this stack must reconcile (output kept in a log).
if ! scripts/demo.sh > "${ORION_STACK_HOME:-.stack}/logs/demo.log" 2>&1; then
  tail -60 "${ORION_STACK_HOME:-.stack}/logs/demo.log"
  echo "demo failed (full output: ${ORION_STACK_HOME:-.stack}/logs/demo.log)" >&2
  exit 1
fi
tail -3 "${ORION_STACK_HOME:-.stack}/logs/demo.log"
.venv/bin/pytest "${@:-tests}"
