#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, start the local stack, lint, type-check, test.
#   scripts/test.sh                 everything: bootstrap, stack up, lint, type-check, wheel check,
#                                   the demo end to end, then unit + integration tests (what CI runs)
#   scripts/test.sh tests/unit      the fast path: when every path argument lies under tests/unit,
#                                   bootstrap, lint, type-check and pytest only; no stack, no wheel
#                                   check, no demo (the unit tests need no service)
#   scripts/test.sh ARGS...         any other pytest arguments: the full path, then pytest ARGS
# Paths are relative to the repository root.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# True when the arguments name at least one path and every path they name lies under tests/unit
# (options and their values, e.g. `-k expr` or `-p no:cacheprovider`, are not paths and are skipped).
unit_only() {
  local arg path found=1
  for arg in "$@"; do
    case "$arg" in -*) continue ;; esac
    path="${arg%%::*}"
    [ -e "$path" ] || continue
    case "$(realpath "$path")/" in
      "$REPO/tests/unit/"*) found=0 ;;
      *) return 1 ;;
    esac
  done
  return "$found"
}
fast=false
if [ "$#" -gt 0 ] && unit_only "$@"; then
  fast=true
fi

scripts/bootstrap.sh
# The shipped systemd units and logrotate file are checked by the real tools (systemd-analyze
# verify/security, logrotate); those tests fail without them in CI (elsewhere they skip, so the
# fast path installs nothing outside CI).
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null \
  && { [ "$fast" = false ] || [ "${CI:-}" = "true" ]; }; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 || true
fi
if [ "$fast" = false ]; then
  scripts/stack.sh up
  if [ "${CI:-}" = "true" ]; then
    trap 'scripts/stack.sh down || true' EXIT
  fi
fi
.venv/bin/ruff check orion_etl tests scripts
.venv/bin/ruff format --check orion_etl tests scripts
.venv/bin/mypy orion_etl
if [ "$fast" = true ]; then
  exec .venv/bin/pytest "$@"
fi
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
