#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, start the local stack, lint, type-check, test.
#   scripts/test.sh                 everything (unit + integration)
#   scripts/test.sh tests/unit      any pytest arguments
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/bootstrap.sh
scripts/stack.sh up
if [ "${CI:-}" = "true" ]; then
  trap 'scripts/stack.sh down || true' EXIT
fi
.venv/bin/ruff check orion_etl tests scripts
.venv/bin/ruff format --check orion_etl tests scripts
.venv/bin/mypy orion_etl
.venv/bin/pytest "${@:-tests}"
